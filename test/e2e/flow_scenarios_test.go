package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailfleet/mailfleet/test/cluster"
)

func imapLogin(t *testing.T, addr, user, pass string, ev *events) *imapclient.Client {
	t.Helper()
	c := dialIMAP(t, addr, ev)
	login(t, c, user, pass)
	return c
}

func fetchBody(t *testing.T, c *imapclient.Client, uid imap.UID) []byte {
	t.Helper()
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH %d: %v %v", uid, msgs, err)
	}
	return msgs[0].FindBodySection(section)
}

// 1. Internet → inbound → IDLE on access-2 told within a second → FETCH on
// access-1 returns the bytes → POP3 RETR the same → DELE + QUIT → expunged.
func flowInboundToReaders(t *testing.T, tg *flowTarget) {
	user, pass := tg.account(t, "flow1")
	ev := newEvents()
	idler := imapLogin(t, tg.imaps2, user, pass, ev)
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := idler.Idle()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: Outside <someone@example.org>\r\nTo: " + user + "\r\nSubject: flow one\r\nMessage-ID: <flow1@example.org>\r\n\r\nFrom the Internet, with love.\r\n.dotted line\r\n")
	if err := sendSMTP(tg.smtp, "someone@example.org", []string{user}, msg); err != nil {
		t.Fatal(err)
	}
	ev.waitFor(t, "EXISTS on access-2", time.Second, func(e *events) bool { return len(e.exists) > 0 && e.exists[len(e.exists)-1] == 1 })

	reader := imapLogin(t, tg.imaps, user, pass, nil)
	if _, err := reader.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	imapBytes := fetchBody(t, reader, 1)
	if _, ok := addedHeaders(imapBytes, msg); !ok || !bytes.HasPrefix(imapBytes, []byte("Received: ")) {
		t.Fatalf("IMAP BODY[] is not the message plus added headers:\n%s", imapBytes)
	}
	p := pop3Dial(t, tg.pop3s)
	p.do("USER "+user, "+OK")
	p.do("PASS "+pass, "+OK maildrop has 1 message")
	p.do("RETR 1", "+OK")
	if got := strings.Join(p.lines(), "\r\n") + "\r\n"; got != string(imapBytes) {
		t.Fatalf("POP3 RETR differs from IMAP BODY[]:\n%q\n%q", got, imapBytes)
	}
	p.do("DELE 1", "+OK")
	p.do("QUIT", "+OK")
	ev.waitFor(t, "EXPUNGE on access-2", 5*time.Second, func(e *events) bool { return len(e.expunge) == 1 })
	idle.Close()
	idle.Wait()
}

// 2. Submission to a local and a remote address: the local copy lands, the
// remote MX gets it DKIM-signed, and the client's APPEND to Sent works.
func flowSubmission(t *testing.T, tg *flowTarget) {
	sender, spass := tg.account(t, "flow2a")
	local, lpass := tg.account(t, "flow2b")
	out := tg.mailctl(t, "", "dkim", "generate", "example.test")
	m := regexp.MustCompile(`(?m)^(\S+)\. IN TXT (.+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mailctl dkim output:\n%s", out)
	}
	txt := strings.Join(regexp.MustCompile(`"([^"]*)"`).FindAllString(m[2], -1), "")
	tg.dns.TXT(m[1], strings.ReplaceAll(txt, `"`, ""))
	msg := []byte("From: " + sender + "\r\nTo: " + local + ", far@remote.example\r\nSubject: flow two\r\nMessage-ID: <flow2@example.test>\r\n\r\nHello near and far.\r\n")
	if err := submit(tg.submission, sender, spass, sender, []string{local, "far@remote.example"}, msg); err != nil {
		t.Fatal(err)
	}
	lc := imapLogin(t, tg.imaps, local, lpass, nil)
	if _, err := lc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := fetchBody(t, lc, 1); !bytes.HasSuffix(got, msg) {
		t.Fatalf("local copy:\n%s", got)
	}
	waitFor(t, "the remote copy", 10*time.Second, func() bool { return len(tg.remote.Received()) >= 1 })
	var remoteCopy []byte
	for _, r := range tg.remote.Received() {
		if bytes.Contains(r.Data, []byte("<flow2@example.test>")) {
			remoteCopy = r.Data
		}
	}
	v, err := dkim.VerifyWithOptions(bytes.NewReader(remoteCopy), &dkim.VerifyOptions{LookupTXT: (&netResolver{tg.dns.Addr}).txt})
	if err != nil || len(v) != 1 || v[0].Err != nil {
		t.Fatalf("DKIM of the remote copy: %v %+v", err, v)
	}
	sc := imapLogin(t, tg.imaps2, sender, spass, nil)
	data := appendMsg(t, sc, "Sent", msg, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	if data.UID == 0 {
		t.Fatalf("APPEND to Sent: %+v", data)
	}
}

// 3. Flags set on one access pod are seen on the other; so is a new folder.
func flowAcrossPods(t *testing.T, tg *flowTarget) {
	user, pass := tg.account(t, "flow3")
	if err := sendSMTP(tg.smtp, "someone@example.org", []string{user}, []byte("From: someone@example.org\r\nSubject: three\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	a := imapLogin(t, tg.imaps, user, pass, nil)
	ev := newEvents()
	b := imapLogin(t, tg.imaps2, user, pass, ev)
	for _, c := range []*imapclient.Client{a, b} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flags on the other pod", 5*time.Second, func() bool {
		msgs, err := b.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
		return err == nil && len(msgs) == 1 && len(msgs[0].Flags) == 2
	})
	if err := a.Create("Projects/Flow", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := b.List("", "Projects/*", nil).Collect()
	if err != nil || len(list) != 1 || list[0].Mailbox != "Projects/Flow" {
		t.Fatalf("LIST on the other pod: %v %v", list, err)
	}
}

// 4. A small quota fills: inbound defers, IMAP APPEND gets OVERQUOTA; raising
// the quota with mailctl lets both through.
func flowQuota(t *testing.T, tg *flowTarget) {
	user, pass := tg.account(t, "flow4")
	tg.mailctl(t, "", "account", "quota", user, "3000")
	big := append([]byte("From: someone@example.org\r\nSubject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789\r\n"), 160)...)
	if err := sendSMTP(tg.smtp, "someone@example.org", []string{user}, big); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := sendSMTP(tg.smtp, "someone@example.org", []string{user}, big); !strings.HasPrefix(smtpReply(err), "452 4.2.2") {
		t.Fatalf("inbound over quota: %v, want 452 4.2.2", err)
	}
	c := imapLogin(t, tg.imaps, user, pass, nil)
	cmd := c.Append("INBOX", int64(len(big)), nil)
	cmd.Write(big)
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("IMAP APPEND over quota: %v", err)
	}
	tg.mailctl(t, "", "account", "quota", user, "1M")
	if err := sendSMTP(tg.smtp, "someone@example.org", []string{user}, big); err != nil {
		t.Fatalf("inbound after raising the quota: %v", err)
	}
	appendMsg(t, c, "INBOX", big, nil)
}

// 5. Restarts under load: senders push mail through the MX and through
// submission (retrying temporary failures and dropped connections, as MTAs
// and mail clients do) while churn restarts the serving processes, and an
// IMAP reader polls the INBOX throughout, reconnecting whenever its server
// goes away. Every message that got a 250 is in the INBOX exactly once, and
// the reader never sees UIDVALIDITY change, a UID vanish, or a new UID below
// one it saw before. Locally churn restarts every storage and access
// process in turn; against a deployment it is MAILFLEET_E2E_CHURN, a shell
// command (scale, rolling upgrade) that the load outlasts.
func flowRestarts(t *testing.T, tg *flowTarget) {
	churn, minTotal := localRestarts(tg), 500
	if tg.local == nil {
		churn, minTotal = shellChurn(os.Getenv("MAILFLEET_E2E_CHURN")), 200
	}
	user, pass := tg.account(t, "flow5")
	load := newMailLoad(tg, user, pass)
	churnDone := make(chan error, 1)
	go func() { churnDone <- churn(t) }()
	readerStop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); load.read(t, readerStop) }()
	churnErr := load.send(t, minTotal, churnDone)
	close(readerStop)
	<-readerDone
	if churnErr != nil {
		t.Fatalf("churn: %v", churnErr)
	}
	load.verify(t)
}

// localRestarts restarts every storage and access process in turn.
func localRestarts(tg *flowTarget) func(t *testing.T) error {
	return func(t *testing.T) error {
		var procs []*cluster.Process
		procs = append(procs, tg.local.Storage...)
		for _, a := range tg.local.Access {
			procs = append(procs, a.Process)
		}
		for _, p := range procs {
			time.Sleep(1500 * time.Millisecond)
			p.Signal(syscall.SIGTERM)
			p.Start()
		}
		return nil
	}
}

// shellChurn runs command with sh -c and logs what it printed.
func shellChurn(command string) func(t *testing.T) error {
	return func(t *testing.T) error {
		out, err := exec.Command("sh", "-c", command).CombinedOutput()
		t.Logf("churn %q:\n%s", command, out)
		return err
	}
}

// mailLoad is the traffic of scenario 5.
type mailLoad struct {
	tg         *flowTarget
	user, pass string

	mu        sync.Mutex
	acked     map[string]bool // Message-ID → the server answered 250
	attempts  int
	failures  map[string]int // the first words of each refusal → count
	sessions  int            // IMAP sessions the reader opened
	reconnect int            // of which after a failed command
}

func newMailLoad(tg *flowTarget, user, pass string) *mailLoad {
	return &mailLoad{tg: tg, user: user, pass: pass, acked: map[string]bool{}, failures: map[string]int{}}
}

// send pushes messages from 6 senders (half through the MX, half through
// submission) until churn has finished and at least minTotal are
// acknowledged, within a bounded time and count. It returns churn's error.
func (l *mailLoad) send(t *testing.T, minTotal int, churnDone <-chan error) error {
	const senders, maxTotal = 6, 20000
	deadline := time.Now().Add(15 * time.Minute)
	var churnErr error
	finished := make(chan struct{})
	go func() { churnErr = <-churnDone; close(finished) }()
	more := func() bool {
		l.mu.Lock()
		n := len(l.acked)
		l.mu.Unlock()
		select {
		case <-finished:
			return n < minTotal && time.Now().Before(deadline)
		default:
			return n < maxTotal && time.Now().Before(deadline)
		}
	}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; more(); i++ {
				id := fmt.Sprintf("<load%d-%d-%d@example.org>", s, i, time.Now().UnixNano())
				if !l.deliver(t, s%2 == 0, id) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}(s)
	}
	wg.Wait()
	<-finished
	return churnErr
}

// deliver sends one message until it is acknowledged, retrying temporary
// failures for up to three minutes; a permanent failure fails the test.
func (l *mailLoad) deliver(t *testing.T, viaMX bool, id string) bool {
	giveUp := time.Now().Add(3 * time.Minute)
	for {
		var acked bool
		var err error
		if viaMX {
			msg := []byte("From: someone@example.org\r\nTo: " + l.user + "\r\nMessage-ID: " + id + "\r\nSubject: load\r\n\r\nx\r\n")
			acked, err = mxSend(l.tg.smtp, "someone@example.org", []string{l.user}, msg)
		} else {
			msg := []byte("From: " + l.user + "\r\nTo: " + l.user + "\r\nMessage-ID: " + id + "\r\nSubject: load\r\n\r\ny\r\n")
			acked, err = submitAcked(l.tg.submission, l.user, l.pass, l.user, []string{l.user}, msg)
		}
		l.mu.Lock()
		l.attempts++
		if acked {
			l.acked[id] = true
		} else {
			l.failures[firstWords(smtpReply(err), 6)]++
		}
		l.mu.Unlock()
		if acked {
			return true
		}
		if strings.HasPrefix(smtpReply(err), "5") || time.Now().After(giveUp) {
			t.Errorf("%s never accepted: %v", id, err)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read polls the INBOX over IMAPS until stop, with a new connection every
// few polls (so that, behind a Service, it meets every access pod, old and
// new) and whenever one fails, and checks what every server shows it.
func (l *mailLoad) read(t *testing.T, stop <-chan struct{}) {
	var c *imapclient.Client
	var validity uint32
	seen := map[imap.UID]bool{}
	var maxUID imap.UID
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for poll := 1; ; poll++ {
		select {
		case <-stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		if c != nil && poll%5 == 0 {
			c.Logout().Wait()
			c.Close()
			c = nil
		}
		if c == nil {
			conn, err := tls.Dial("tcp", l.tg.imaps, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				continue
			}
			c = imapclient.New(conn, nil)
			sel, err := loginSelect(c, l.user, l.pass)
			if err != nil {
				c.Close()
				c = nil
				continue
			}
			if validity != 0 && sel.UIDValidity != validity {
				t.Errorf("UIDVALIDITY changed from %d to %d on reconnect", validity, sel.UIDValidity)
			}
			validity = sel.UIDValidity
			l.mu.Lock()
			l.sessions++
			l.mu.Unlock()
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			c.Close()
			c = nil
			l.mu.Lock()
			l.reconnect++
			l.mu.Unlock()
			continue
		}
		now := map[imap.UID]bool{}
		var fresh []imap.UID
		for _, uid := range data.AllUIDs() {
			now[uid] = true
			if !seen[uid] {
				fresh = append(fresh, uid)
			}
		}
		for uid := range seen {
			if !now[uid] {
				t.Errorf("UID %d vanished from the INBOX", uid)
			}
		}
		for _, uid := range fresh {
			if uid <= maxUID {
				t.Errorf("new UID %d appeared below UID %d seen before", uid, maxUID)
			}
		}
		for _, uid := range fresh {
			seen[uid] = true
			maxUID = max(maxUID, uid)
		}
	}
}

func loginSelect(c *imapclient.Client, user, pass string) (*imap.SelectData, error) {
	if err := c.Login(user, pass).Wait(); err != nil {
		return nil, err
	}
	return c.Select("INBOX", nil).Wait()
}

// verify checks that every acknowledged message is in the INBOX exactly once.
func (l *mailLoad) verify(t *testing.T) {
	c := imapLogin(t, l.tg.imaps, l.user, l.pass, nil)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range msgs {
		id := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(m.FindBodySection(section))), "Message-ID:"))
		seen[id]++
	}
	lost, dup := 0, 0
	for id := range l.acked {
		switch n := seen[id]; {
		case n == 0:
			lost++
			t.Errorf("%s was acknowledged and is not in the INBOX", id)
		case n > 1:
			dup++
			t.Errorf("%s was acknowledged and is in the INBOX %d times", id, n)
		}
	}
	failed := 0
	for _, n := range l.failures {
		failed += n
	}
	t.Logf("load: %d messages acknowledged in %d attempts (%d refused or cut off and retried: %v); IMAP reader: %d sessions, %d after a failure; INBOX holds %d; lost %d, duplicated %d",
		len(l.acked), l.attempts, failed, l.failures, l.sessions, l.reconnect, len(msgs), lost, dup)
}

// firstWords returns at most n words of s.
func firstWords(s string, n int) string {
	w := strings.Fields(s)
	return strings.Join(w[:min(n, len(w))], " ")
}

// 6. Open relay, AUTH without TLS, wrong passwords, other users' mailboxes.
func flowAbuse(t *testing.T, tg *flowTarget) {
	user, pass := tg.account(t, "flow6")
	other, opass := tg.account(t, "flow6b")
	// Open relay through the MX, and through submission without AUTH.
	if err := sendSMTP(tg.smtp, "spammer@example.org", []string{"victim@elsewhere.example"}, []byte("x\r\n")); !strings.HasPrefix(smtpReply(err), "550 5.7.1") {
		t.Fatalf("relay through the MX: %v", err)
	}
	r := rawSMTP(t, tg.submission)
	ehlo := r.cmd("EHLO spammer.example", "250")
	if strings.Contains(ehlo, "AUTH") {
		t.Fatal("submission offers AUTH before TLS")
	}
	r.cmd("AUTH PLAIN AHgAeA==", "5")
	r.cmd("MAIL FROM:<"+user+">", "530")
	// Wrong passwords everywhere.
	if err := submit(tg.submission, user, "wrong", user, []string{other}, []byte("x\r\n")); !strings.HasPrefix(smtpReply(err), "535") {
		t.Fatalf("submission wrong password: %v", err)
	}
	ic := dialIMAP(t, tg.imaps, nil)
	if err := ic.Login(user, "wrong").Wait(); err == nil {
		t.Fatal("IMAP accepted a wrong password")
	}
	p := pop3Dial(t, tg.pop3s)
	p.do("USER "+user, "+OK")
	p.do("PASS wrong", "-ERR [AUTH]")
	// Another user's mailbox names reveal and change nothing.
	oc := imapLogin(t, tg.imaps, other, opass, nil)
	if err := oc.Create("Private", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uc := imapLogin(t, tg.imaps2, user, pass, nil)
	for _, name := range []string{"Private", other + "/INBOX", "../" + other} {
		if _, err := uc.Select(name, nil).Wait(); err == nil {
			t.Fatalf("SELECT %q succeeded", name)
		}
		if err := uc.Delete(name).Wait(); err == nil {
			t.Fatalf("DELETE %q succeeded", name)
		}
	}
	if list, _ := uc.List("", "*", nil).Collect(); len(list) != 6 {
		t.Fatalf("%s sees %d mailboxes", user, len(list))
	}
	if list, _ := oc.List("", "Private", nil).Collect(); len(list) != 1 {
		t.Fatal("the other user's mailbox was touched")
	}
}
