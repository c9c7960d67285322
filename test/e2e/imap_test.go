package e2e

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// events collects unilateral updates a client receives.
type events struct {
	mu      sync.Mutex
	exists  []uint32
	expunge []uint32
	fetch   map[uint32][]imap.Flag
	ch      chan struct{}
}

func newEvents() *events {
	return &events{fetch: map[uint32][]imap.Flag{}, ch: make(chan struct{}, 1000)}
}

func (e *events) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				e.mu.Lock()
				e.exists = append(e.exists, *d.NumMessages)
				e.mu.Unlock()
				e.ch <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			e.mu.Lock()
			e.expunge = append(e.expunge, seq)
			e.mu.Unlock()
			e.ch <- struct{}{}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.fetch[buf.SeqNum] = buf.Flags
			e.mu.Unlock()
			e.ch <- struct{}{}
		},
	}
}

// waitFor waits until cond holds (checked after each event) or fails.
func (e *events) waitFor(t *testing.T, what string, within time.Duration, cond func(e *events) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		e.mu.Lock()
		ok := cond(e)
		e.mu.Unlock()
		if ok {
			return time.Since(start)
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no %s within %v", what, within)
		}
	}
}

func dialIMAP(t *testing.T, addr string, ev *events) *imapclient.Client {
	t.Helper()
	opts := &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}}
	if ev != nil {
		opts.UnilateralDataHandler = ev.handler()
	}
	c, err := imapclient.DialTLS(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, c *imapclient.Client, user, pass string) {
	t.Helper()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
}

func appendMsg(t *testing.T, c *imapclient.Client, mailbox string, body []byte, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(body)), opts)
	if _, err := cmd.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return data
}

// Invariant 5: a change made through one access pod reaches IDLE sessions on
// another within a second: EXISTS after APPEND, FETCH after STORE, EXPUNGE.
func TestIMAPPushAcrossPods(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Storage: 2, Access: 2})
	c.CreateAccount("idle@example.test", "idle-secret")

	ev := newEvents()
	watcher := dialIMAP(t, c.Access[1].IMAPS, ev)
	login(t, watcher, "idle@example.test", "idle-secret")
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}

	writer := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, writer, "idle@example.test", "idle-secret")
	start := time.Now()
	appendMsg(t, writer, "INBOX", message(1), nil)
	ev.waitFor(t, "EXISTS", time.Second, func(e *events) bool { return len(e.exists) > 0 && e.exists[len(e.exists)-1] == 1 })
	t.Logf("APPEND on pod 0 to EXISTS on pod 1: %v", time.Since(start))

	// Deliveries (as inbound does) reach IDLE too.
	c.Deliver([]string{"idle@example.test"}, message(2))
	ev.waitFor(t, "EXISTS 2", time.Second, func(e *events) bool { return e.exists[len(e.exists)-1] == 2 })

	if _, err := writer.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := writer.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// The watcher, an IMAP4rev1 session, claimed \Recent for the message
	// when its IDLE announced it (RFC 3501 7.3.2), so the flags it is
	// told are the two stored ones and \Recent.
	ev.waitFor(t, "FETCH FLAGS", time.Second, func(e *events) bool {
		f := e.fetch[1]
		return len(f) == 3 && slices.Contains(f, imap.FlagFlagged) && slices.Contains(f, imap.FlagDeleted) && slices.Contains(f, imap.Flag(`\Recent`))
	})
	if err := writer.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	ev.waitFor(t, "EXPUNGE", time.Second, func(e *events) bool { return len(e.expunge) == 1 && e.expunge[0] == 1 })

	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	// After IDLE, the watcher's view matches the server: one message, UID 2.
	msgs, err := watcher.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("watcher view after IDLE: %v %v", msgs, err)
	}
}

// Two sessions of one user on different pods append concurrently to one
// mailbox: UIDs unique and ascending, and both views agree.
func TestIMAPConcurrentAppendsOnTwoPods(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Storage: 2, Access: 2})
	c.CreateAccount("busy@example.test", "busy-secret")
	const perSession = 40
	var mu sync.Mutex
	var uids []imap.UID
	var wg sync.WaitGroup
	clients := make([]*imapclient.Client, 2)
	for i := range clients {
		clients[i] = dialIMAP(t, c.Access[i].IMAPS, nil)
		login(t, clients[i], "busy@example.test", "busy-secret")
		if _, err := clients[i].Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; n < perSession; n++ {
				data := appendMsg(t, clients[i], "INBOX", message(i*1000+n), nil)
				mu.Lock()
				uids = append(uids, data.UID)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	for i := 1; i < len(uids); i++ {
		if uids[i] == uids[i-1] {
			t.Fatalf("UID %d assigned twice", uids[i])
		}
	}
	var views [2]string
	for i, cl := range clients {
		// A NOOP shows every change committed before it, whichever pod made
		// it (the other pod's last appends are not left in flight).
		if err := cl.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		for j, m := range msgs {
			if m.SeqNum != uint32(j+1) || (j > 0 && m.UID <= msgs[j-1].UID) {
				t.Fatalf("session %d: seq %d has UID %d after UID %d", i, m.SeqNum, m.UID, msgs[max(j-1, 0)].UID)
			}
			parts = append(parts, fmt.Sprint(m.UID))
		}
		views[i] = strings.Join(parts, ",")
		if len(msgs) != 2*perSession {
			t.Fatalf("session %d sees %d messages, want %d", i, len(msgs), 2*perSession)
		}
	}
	if views[0] != views[1] {
		t.Fatalf("views differ:\n%s\n%s", views[0], views[1])
	}
}

// Messages that arrive together (one COPY of three, one revision) are
// announced and numbered exactly: a SEARCH in another session never names a
// message before its EXISTS, and never skips one it has announced.
func TestArrivalsInOneBatchAreNumberedExactly(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("batch@example.test", "batch-secret")
	writer := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, writer, "batch@example.test", "batch-secret")
	if err := writer.Create("Source", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		appendMsg(t, writer, "Source", []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)), nil)
	}
	reader := rawDial(t, c.Access[0].IMAPS, true)
	reader.expect(`LOGIN batch@example.test batch-secret`, "OK")
	reader.expect("SELECT INBOX", "OK")

	if _, err := writer.Select("Source", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Copy(imap.SeqSetNum(1, 2, 3), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	// Give the reader's pod time to hear of the copy, so that the SEARCH
	// below runs with the three arrivals pending.
	time.Sleep(500 * time.Millisecond)

	known := 0
	check := func(lines []string) {
		t.Helper()
		for _, l := range lines {
			var n int
			if _, err := fmt.Sscanf(l, "* %d EXISTS", &n); err == nil {
				known = n
				continue
			}
			if strings.HasPrefix(l, "* SEARCH") {
				got := strings.Fields(strings.TrimPrefix(l, "* SEARCH"))
				if len(got) != known {
					t.Fatalf("SEARCH ALL named %v while the client knew of %d messages", got, known)
				}
			}
		}
	}
	check(reader.expect("SEARCH ALL", "OK"))
	for deadline := time.Now().Add(5 * time.Second); known < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the client was told of %d of the 3 copied messages", known)
		}
		check(reader.expect("NOOP", "OK"))
	}
	check(reader.expect("UID SEARCH ALL", "OK"))
}

// A NOOP on one pod right after an APPEND through another is acknowledged
// shows the new message: the pod catches up with what is committed before
// it answers, rather than leaving the message in flight on the Watch stream.
func TestNoopSeesAppendsFromAnotherPod(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("noop@example.test", "noop-secret")
	writer := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, writer, "noop@example.test", "noop-secret")
	reader := dialIMAP(t, c.Access[1].IMAPS, nil)
	login(t, reader, "noop@example.test", "noop-secret")
	if _, err := reader.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 40; n++ {
		appendMsg(t, writer, "INBOX", message(n), nil)
		if err := reader.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if got := reader.Mailbox().NumMessages; got != uint32(n) {
			t.Fatalf("after append %d, NOOP on the other pod reports %d messages", n, got)
		}
	}
}
