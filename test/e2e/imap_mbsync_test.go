package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// TestIMAPTwoWaySyncWithMbsync uses mbsync (isync, Debian's package; .ci/run
// installs it) as its users do: a two-way sync of every folder between a
// local Maildir and the server. It checks the first download (every
// message, byte for byte), changes on the server reaching the Maildir
// (flag, expunge, new mail), changes in the Maildir reaching the server
// (flag, deletion, a new message uploaded), and that a sync against the
// other access pod with the same sync state finds nothing to do: any pod
// serves the same UIDs.
func TestIMAPTwoWaySyncWithMbsync(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		t.Fatal("mbsync is not installed (Debian package isync; .ci/run installs it)")
	}
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user, pass = "sync@example.test", "sync-secret-1"
	c.CreateAccount(user, pass)
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 7, MaxSize: 256 << 10, NoBroken: true})
	for i := range 12 {
		c.Deliver([]string{user}, gen.Message(i))
	}
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, user, pass)
	if err := cl.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := 12; i < 17; i++ {
		appendMsg(t, cl, "Projects", gen.Message(i), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	}

	dir := t.TempDir()
	maildir := filepath.Join(dir, "mail")
	if err := os.Mkdir(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := func(addr string) string {
		host, port, _ := strings.Cut(addr, ":")
		path := filepath.Join(dir, "mbsyncrc-"+port)
		conf := fmt.Sprintf(`IMAPAccount mailfleet
Host %s
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account mailfleet

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel mail
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, user, pass, filepath.Join(c.Dir, "tls", "cert.pem"), maildir, maildir)
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sync := func(addr string) {
		t.Helper()
		out, err := exec.Command(mbsync, "-Dn", "-c", rc(addr), "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync against %s: %v\n%s", addr, err, out)
		}
	}

	// 1. The first sync downloads every folder, byte for byte (mbsync
	// stores lines with LF endings).
	sync(c.Access[0].IMAPS)
	checkSame := func(mailbox string) map[string]localMsg {
		t.Helper()
		local := readMaildir(t, filepath.Join(maildir, mailbox))
		server := fetchAll(t, cl, mailbox)
		if len(local) != len(server) {
			t.Fatalf("%s: %d messages in the Maildir, %d on the server", mailbox, len(local), len(server))
		}
		for sum, sm := range server {
			lm, ok := local[sum]
			if !ok {
				t.Fatalf("%s: server message (flags %v) missing from the Maildir or different:\n%s", mailbox, sm.flags, closest(sm.body, local))
			}
			if lm.seen != sm.has(imap.FlagSeen) || lm.flagged != sm.has(imap.FlagFlagged) {
				t.Errorf("%s: Maildir flags %q, server flags %v", mailbox, lm.info, sm.flags)
			}
		}
		return local
	}
	checkSame("INBOX")
	checkSame("Projects")

	// 2. Server-side changes reach the Maildir: a flag, an expunge, new mail.
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.UIDExpunge(imap.UIDSetNum(2)).Close(); err != nil {
		t.Fatal(err)
	}
	c.Deliver([]string{user}, gen.Message(20))
	sync(c.Access[0].IMAPS)
	local := checkSame("INBOX")
	if len(local) != 12 {
		t.Fatalf("INBOX: %d messages in the Maildir after one expunge and one arrival, want 12", len(local))
	}

	// 3. Maildir changes reach the server: \Seen on one message, one
	// deleted, one new message in Projects.
	files := sortedFiles(local)
	markSeen(t, files[0])
	if err := os.Remove(files[1]); err != nil {
		t.Fatal(err)
	}
	fresh := bytes.ReplaceAll(gen.Message(30), []byte("\r\n"), []byte("\n"))
	if err := os.WriteFile(filepath.Join(maildir, "Projects", "new", "1700000000.local-1.test"), fresh, 0o600); err != nil {
		t.Fatal(err)
	}
	sync(c.Access[0].IMAPS)
	inbox := checkSame("INBOX")
	if len(inbox) != 11 {
		t.Fatalf("INBOX: %d messages after a local deletion, want 11", len(inbox))
	}
	archive := checkSame("Projects")
	if len(archive) != 6 {
		t.Fatalf("Projects: %d messages after a local new one, want 6", len(archive))
	}
	if _, ok := fetchAll(t, cl, "Projects")[sumOf(fresh)]; !ok {
		t.Fatal("the message written into the Maildir is not on the server as written")
	}

	// 4. The other pod, same sync state: nothing to do, nothing duplicated.
	sync(c.Access[1].IMAPS)
	if n := len(checkSame("INBOX")); n != 11 {
		t.Fatalf("INBOX: %d messages after a sync through the other pod, want 11", n)
	}
	if n := len(checkSame("Projects")); n != 6 {
		t.Fatalf("Projects: %d messages after a sync through the other pod, want 6", n)
	}
}

type localMsg struct {
	path          string
	info          string
	seen, flagged bool
}

type serverMsg struct {
	flags []imap.Flag
	body  []byte
}

// closest describes where the Maildir's copy of a message that is not
// there unchanged differs (for the failure message).
func closest(body []byte, local map[string]localMsg) string {
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	best, at := "", -1
	for _, lm := range local {
		b, _ := os.ReadFile(lm.path)
		i := 0
		for i < len(b) && i < len(body) && b[i] == body[i] {
			i++
		}
		if i > at {
			at = i
			best = fmt.Sprintf("%s differs at octet %d of %d/%d: server %.60q, Maildir %.60q", lm.path, i, len(body), len(b), body[i:], b[i:])
		}
	}
	return best
}

func (m serverMsg) has(f imap.Flag) bool {
	for _, g := range m.flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// sumOf identifies a message by its content with LF line endings and
// without the X-TUID header mbsync adds to every message it copies (its
// way of recognizing a copy when a server lacks UIDPLUS).
func sumOf(b []byte) string {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if i := bytes.Index(b, []byte("\nX-TUID: ")); i >= 0 && i < bytes.Index(b, []byte("\n\n")) {
		end := bytes.IndexByte(b[i+1:], '\n')
		b = append(b[:i:i], b[i+1+end:]...)
	}
	s := sha256.Sum256(b)
	return fmt.Sprintf("%x", s)
}

// readMaildir reads a Maildir folder (cur and new): content sum -> file.
func readMaildir(t *testing.T, dir string) map[string]localMsg {
	t.Helper()
	out := map[string]localMsg{}
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			path := filepath.Join(dir, sub, e.Name())
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, info, _ := strings.Cut(e.Name(), ":2,")
			sum := sumOf(b)
			if _, dup := out[sum]; dup {
				t.Fatalf("%s: a message is in the Maildir twice", dir)
			}
			out[sum] = localMsg{path: path, info: info, seen: strings.Contains(info, "S"), flagged: strings.Contains(info, "F")}
		}
	}
	return out
}

// fetchAll reads every message of a mailbox: content sum -> flags.
func fetchAll(t *testing.T, cl *imapclient.Client, mailbox string) map[string]serverMsg {
	t.Helper()
	if _, err := cl.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	msgs, err := cl.Fetch(all, &imap.FetchOptions{Flags: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]serverMsg{}
	for _, m := range msgs {
		if len(m.BodySection) != 1 {
			t.Fatalf("%s: FETCH without BODY[]", mailbox)
		}
		out[sumOf(m.BodySection[0].Bytes)] = serverMsg{flags: m.Flags, body: m.BodySection[0].Bytes}
	}
	return out
}

func sortedFiles(m map[string]localMsg) []string {
	var out []string
	for _, lm := range m {
		out = append(out, lm.path)
	}
	sort.Strings(out)
	return out
}

// markSeen renames a Maildir file to carry the S flag (what a mail reader
// does when a message is read), moving it to cur.
func markSeen(t *testing.T, path string) {
	t.Helper()
	name := filepath.Base(path)
	base, info, _ := strings.Cut(name, ":2,")
	if !strings.Contains(info, "S") {
		chars := strings.Split(info+"S", "")
		sort.Strings(chars)
		info = strings.Join(chars, "")
	}
	dst := filepath.Join(filepath.Dir(filepath.Dir(path)), "cur", base+":2,"+info)
	if err := os.Rename(path, dst); err != nil {
		t.Fatal(err)
	}
}
