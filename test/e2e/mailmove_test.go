package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// movedMessage is what an import or export must keep of a message.
type movedMessage struct {
	Body  []byte
	Flags []string
	Date  int64 // internal date, Unix seconds
}

// accountSnapshot is an account as the storage API shows it: every
// mailbox's messages in UID order, and the subscribed mailboxes.
type accountSnapshot struct {
	Folders    map[string][]movedMessage
	Subscribed []string
}

func snapshotAccount(t *testing.T, c *cluster.Cluster, account string) accountSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := c.Mailbox.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: account})
	if err != nil {
		t.Fatal(err)
	}
	snap := accountSnapshot{Folders: map[string][]movedMessage{}}
	for _, mb := range list.Mailboxes {
		if mb.Subscribed {
			snap.Subscribed = append(snap.Subscribed, mb.Name)
		}
		msgs := []movedMessage{}
		after := uint32(0)
		for {
			resp, err := c.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mb.Id, AfterUid: after, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range resp.Messages {
				r, err := storeclient.MessageBodyReader(ctx, c.Messages, account, mb.Id, m.Uid, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Fatal(err)
				}
				flags := append([]string(nil), m.Flags...)
				sort.Strings(flags)
				msgs = append(msgs, movedMessage{Body: body, Flags: flags, Date: m.InternalDate.AsTime().Unix()})
			}
			if !resp.More {
				break
			}
			after = resp.NextAfterUid
		}
		snap.Folders[mb.Name] = msgs
	}
	sort.Strings(snap.Subscribed)
	return snap
}

// compareSnapshots fails on the first difference, naming it.
func compareSnapshots(t *testing.T, what string, got, want accountSnapshot) {
	t.Helper()
	var gn, wn []string
	for n := range got.Folders {
		gn = append(gn, n)
	}
	for n := range want.Folders {
		wn = append(wn, n)
	}
	sort.Strings(gn)
	sort.Strings(wn)
	if !reflect.DeepEqual(gn, wn) {
		t.Fatalf("%s: folders %q, want %q", what, gn, wn)
	}
	if !reflect.DeepEqual(got.Subscribed, want.Subscribed) {
		t.Fatalf("%s: subscribed %q, want %q", what, got.Subscribed, want.Subscribed)
	}
	for _, n := range wn {
		g, w := got.Folders[n], want.Folders[n]
		if len(g) != len(w) {
			t.Fatalf("%s: %s has %d messages, want %d", what, n, len(g), len(w))
		}
		for i := range w {
			if !bytes.Equal(g[i].Body, w[i].Body) {
				t.Fatalf("%s: %s message %d: body of %d octets differs from the original's %d", what, n, i, len(g[i].Body), len(w[i].Body))
			}
			if !reflect.DeepEqual(g[i].Flags, w[i].Flags) || g[i].Date != w[i].Date {
				t.Fatalf("%s: %s message %d: flags %q date %d, want %q %d", what, n, i, g[i].Flags, g[i].Date, w[i].Flags, w[i].Date)
			}
		}
	}
}

// populateForMove fills an account with corpus messages (broken ones
// included) in nested, non-ASCII and dotted folders, with every system
// flag, $Forwarded and keywords, and internal dates a second apart from
// an odd start.
func populateForMove(t *testing.T, c *cluster.Cluster, account string, perFolder int) accountSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	folders := []struct {
		name       string
		subscribed bool
		use        storagev1.SpecialUse
	}{
		{"INBOX", true, 0}, {"Work", true, 0}, {"Work/Projects 2019", false, 0}, {"Café ☕", true, 0},
		{"a.b & c", false, 0}, {"Sent", true, storagev1.SpecialUse_SPECIAL_USE_SENT}, {"Empty", false, 0},
	}
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 7, MaxSize: 256 << 10})
	flagSets := [][]string{nil, {`\Seen`}, {`\Seen`, `\Answered`}, {`\Flagged`}, {`\Draft`}, {`\Deleted`, `\Seen`},
		{`$Forwarded`, `\Seen`}, {"$Label1", "Important"}, {`\Seen`, "todo", `\Flagged`, `\Answered`, `\Draft`}}
	start := time.Date(2015, 3, 7, 11, 22, 33, 0, time.UTC)
	idx := 0
	for fi, f := range folders {
		// INBOX and Sent come with every account.
		if _, err := c.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, Name: f.name}); err == nil {
			if _, err := c.Mailbox.SetSubscribed(ctx, &storagev1.SetSubscribedRequest{AccountId: account, Name: f.name, Subscribed: f.subscribed}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := c.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: account, Name: f.name, Subscribed: f.subscribed, SpecialUse: f.use}); err != nil {
			t.Fatal(err)
		}
		n := perFolder
		if f.name == "Empty" {
			n = 0
		} else if fi > 1 {
			n = perFolder / 3
		}
		if n == 0 {
			continue
		}
		stream, err := c.Messages.AppendMessages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: &storagev1.AppendMessagesRequest_Target{AccountId: account, MailboxName: f.name}}})
		for i := 0; i < n; i++ {
			body := gen.Message(idx)
			if i == 0 { // a body with mbox traps of its own
				body = []byte("From someone Mon Jan  1 00:00:00 2001\r\nSubject: traps\r\n\r\nFrom here\r\n>From there\r\n>>From deeper\r\nno newline at the end")
			}
			date := start.Add(time.Duration(idx) * 3671 * time.Second)
			stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Start_{Start: &storagev1.AppendMessagesRequest_Start{
				Flags: flagSets[idx%len(flagSets)], InternalDate: timestamppb.New(date)}}})
			for len(body) > 0 {
				chunk := body[:min(len(body), 1<<20)]
				body = body[len(chunk):]
				stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: chunk}}})
			}
			idx++
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatalf("populating %s: %v", f.name, err)
		}
	}
	return snapshotAccount(t, c, account)
}

func fmtMoved(msgs []movedMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n  %q %q %d", m.Body, m.Flags, m.Date)
	}
	return b.String()
}

func runMailctl(t *testing.T, c *cluster.Cluster, stdin string, args ...string) string {
	t.Helper()
	cmd := mailctlCommand(c, c.Storage[0].Addr, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// A Maildir as Dovecot writes it: INBOX with cur/new, folders .Work and
// .Work.Projects, flags and keywords (dovecot-keywords per folder), dates
// from file names and, without one, the mtime; subscriptions.
func TestMailctlImportMaildir(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{})
	acc := c.CreateAccount("maildir@corp.test", "import-secret-1")
	root := t.TempDir()
	mtime := time.Date(2012, 12, 21, 12, 0, 1, 0, time.UTC)
	for _, d := range []string{"", ".Work", ".Work.Projects", ".Archiv&AOk-"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, d, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFile(t, filepath.Join(root, "dovecot-keywords"), "0 $Label1\n1 Important\n2 NonJunk\n", time.Time{})
	writeFile(t, filepath.Join(root, "cur", "1400000001.M1P1.mail,S=26,W=27:2,Sac"), "Subject: one\r\n\r\nfirst\r\n", time.Time{})
	writeFile(t, filepath.Join(root, "cur", "1400000002.M2P1.mail,S=20:2,DFPRST"), "Subject: two\n\nall\n", time.Time{})
	writeFile(t, filepath.Join(root, "new", "1400000003.M3P1.mail"), "Subject: new\n\nunseen\n", time.Time{})
	writeFile(t, filepath.Join(root, "cur", "legacy-name:2,S"), "Subject: mtime\n\nby mtime\n", mtime)
	writeFile(t, filepath.Join(root, ".Work", "dovecot-keywords"), "0 Client\n", time.Time{})
	writeFile(t, filepath.Join(root, ".Work", "cur", "1300000000.M9P1.mail:2,Ra"), "Subject: work\n\nw\n", time.Time{})
	writeFile(t, filepath.Join(root, ".Work.Projects", "new", "1300000005.M9P2.mail"), "Subject: project\n\np\n", time.Time{})
	writeFile(t, filepath.Join(root, "subscriptions"), "V\t2\n\nINBOX\nWork\tProjects\n", time.Time{})

	out := runMailctl(t, c, "", "import", "maildir@corp.test", "--maildir", root)
	if !strings.Contains(out, "6 messages imported") || !strings.Contains(out, "Work/Projects: 1/1") {
		t.Fatalf("import output:\n%s", out)
	}
	got := snapshotAccount(t, c, acc.Id)
	// Every account comes with INBOX, Drafts, Sent, Trash, Junk and
	// Archive, subscribed.
	want := accountSnapshot{Subscribed: []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash", "Work/Projects"}, Folders: map[string][]movedMessage{
		"Archive": {}, "Drafts": {}, "Sent": {}, "Trash": {}, "Junk": {},
		"INBOX": {
			// Not in a dovecot-uidlist: by internal date (the mtime, 2012, first).
			{[]byte("Subject: mtime\n\nby mtime\n"), []string{`\Seen`}, mtime.Unix()},
			{[]byte("Subject: one\r\n\r\nfirst\r\n"), []string{"$Label1", "NonJunk", `\Seen`}, 1400000001},
			{[]byte("Subject: two\n\nall\n"), []string{"$Forwarded", `\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Seen`}, 1400000002},
			{[]byte("Subject: new\n\nunseen\n"), []string{}, 1400000003},
		},
		"Work":          {{[]byte("Subject: work\n\nw\n"), []string{"Client", `\Answered`}, 1300000000}},
		"Work/Projects": {{[]byte("Subject: project\n\np\n"), []string{}, 1300000005}},
		"Archivé":       {},
	}}
	for _, msgs := range got.Folders {
		for i := range msgs {
			if msgs[i].Flags == nil {
				msgs[i].Flags = []string{}
			}
		}
	}
	compareSnapshots(t, "maildir import", got, want)
	// \Recent is never stored; new/ messages are simply unseen: the
	// INBOX's unseen counter says so.
	mb, err := c.Mailbox.GetMailbox(context.Background(), &storagev1.GetMailboxRequest{AccountId: acc.Id, Name: "INBOX"})
	if err != nil || mb.Mailbox.Unseen != 1 {
		t.Fatalf("INBOX unseen: %v %v", mb, err)
	}
}

// An mbox with ">From " lines (mboxrd), Status/X-Status/X-Keywords as mutt
// and Dovecot write them, and the From line's date.
func TestMailctlImportMbox(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{})
	acc := c.CreateAccount("mbox@corp.test", "import-secret-1")
	mbox := "From alice@example.org Sat Jan  3 01:05:34 1996\n" +
		"Subject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1 work\n\n" +
		">From the start of a line\n>>From quoted twice\n\n" +
		"From bob@example.org Mon Nov 30 08:48:10 2026\n" +
		"Subject: two\nStatus: O\n\nunread\n\n" +
		"From carol@example.org Tue Feb 29 23:59:59 2000\n" +
		"Subject: three\r\nX-Status: T\r\nStatus: R\r\n\r\ndraft\r\n\r\n"
	path := filepath.Join(t.TempDir(), "old.mbox")
	writeFile(t, path, mbox, time.Time{})
	out := runMailctl(t, c, "", "import", "mbox@corp.test", "--mbox", path, "--folder", "Old/1996")
	if !strings.Contains(out, "3 messages imported") {
		t.Fatalf("import output:\n%s", out)
	}
	got := snapshotAccount(t, c, acc.Id)
	want := []movedMessage{
		{[]byte("Subject: one\n\nFrom the start of a line\n>From quoted twice\n"), []string{"$Label1", `\Answered`, `\Flagged`, `\Seen`, "work"},
			time.Date(1996, 1, 3, 1, 5, 34, 0, time.UTC).Unix()},
		{[]byte("Subject: two\n\nunread\n"), nil, time.Date(2026, 11, 30, 8, 48, 10, 0, time.UTC).Unix()},
		{[]byte("Subject: three\r\n\r\ndraft\r\n"), []string{`\Draft`, `\Seen`}, time.Date(2000, 2, 29, 23, 59, 59, 0, time.UTC).Unix()},
	}
	for i, m := range got.Folders["Old/1996"] {
		if len(m.Flags) == 0 {
			got.Folders["Old/1996"][i].Flags = nil
		}
	}
	sort.Strings(want[0].Flags)
	if g := got.Folders["Old/1996"]; !reflect.DeepEqual(g, want) {
		t.Fatalf("Old/1996:\n got %s\nwant %s", fmtMoved(g), fmtMoved(want))
	}
}

// export → import gives the same account: folders, subscriptions, bodies
// byte for byte, flags and keywords, internal dates to the second; for
// Maildir and for mbox.
func TestMailctlExportImportRoundTrip(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{})
	src := c.CreateAccount("source@corp.test", "roundtrip-secret")
	want := populateForMove(t, c, src.Id, 60)

	t.Run("maildir", func(t *testing.T) {
		dst := c.CreateAccount("frommaildir@corp.test", "roundtrip-secret")
		dir := filepath.Join(t.TempDir(), "Maildir")
		out := runMailctl(t, c, "", "export", "source@corp.test", "--maildir", dir)
		if !strings.Contains(out, " messages exported") {
			t.Fatalf("export output:\n%s", out)
		}
		// Maildir++ on disk, as Dovecot reads it.
		for _, p := range []string{"cur", ".Work/cur", ".Work.Projects 2019/cur", ".Caf&AOk- &JhU-/cur", `.a\2eb &- c/cur`, "subscriptions"} {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				t.Fatalf("export: %v", err)
			}
		}
		names, _ := filepath.Glob(filepath.Join(dir, "cur", "*"))
		nameRE := regexp.MustCompile(`^(\d+)\.M\d+P\d+\.mailctl,S=(\d+):2,[A-Za-z]*$`)
		for _, n := range names {
			m := nameRE.FindStringSubmatch(filepath.Base(n))
			st, err := os.Stat(n)
			if m == nil || err != nil || strconv.FormatInt(st.ModTime().Unix(), 10) != m[1] || strconv.FormatInt(st.Size(), 10) != m[2] {
				t.Fatalf("exported file %s: mtime %v, size %d", filepath.Base(n), st.ModTime(), st.Size())
			}
		}
		// Imported with a state file by a run that crashes right after
		// its first append (INBOX), then resumed: nothing twice.
		state := filepath.Join(t.TempDir(), "maildir.state")
		cmd := mailctlCommand(c, c.Storage[0].Addr, "import", "frommaildir@corp.test", "--maildir", dir, "--state", state)
		cmd.Env = append(cmd.Env, "MAILFLEET_TEST_IMPORT_CRASH_AFTER_APPEND=1")
		if out, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 3 {
			t.Fatalf("crashing run: %v\n%s", err, out)
		}
		if n := len(snapshotAccount(t, c, dst.Id).Folders["INBOX"]); n != len(want.Folders["INBOX"]) {
			t.Fatalf("after the crash INBOX has %d messages, want %d", n, len(want.Folders["INBOX"]))
		}
		out = runMailctl(t, c, "", "import", "frommaildir@corp.test", "--maildir", dir, "--state", state)
		if !strings.Contains(out, "INBOX: 60/60") {
			t.Fatalf("resumed import:\n%s", out)
		}
		got := snapshotAccount(t, c, dst.Id)
		compareSnapshots(t, "maildir round trip", got, want)
		if out := runMailctl(t, c, "", "import", "frommaildir@corp.test", "--maildir", dir, "--state", state); !strings.Contains(out, "0 messages imported") {
			t.Fatalf("import run again with its state:\n%s", out)
		}
		compareSnapshots(t, "maildir round trip, imported again", snapshotAccount(t, c, dst.Id), want)
	})
	t.Run("mbox", func(t *testing.T) {
		dst := c.CreateAccount("frommbox@corp.test", "roundtrip-secret")
		dir := filepath.Join(t.TempDir(), "mbox")
		runMailctl(t, c, "", "export", "source@corp.test", "--mbox", dir)
		for name := range want.Folders {
			path := filepath.Join(dir, filepath.FromSlash(name)+".mbox")
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("export: %v", err)
			}
			runMailctl(t, c, "", "import", "frommbox@corp.test", "--mbox", path, "--folder", name)
		}
		got := snapshotAccount(t, c, dst.Id)
		// mbox files keep no subscriptions.
		got.Subscribed = want.Subscribed
		compareSnapshots(t, "mbox round trip", got, want)
	})
}

// Every folder of a live IMAP server (another account of a Mailfleet,
// over real IMAPS), stopped midway and resumed from the state file: no
// duplicates, nothing missing, and a third run imports nothing.
func TestMailctlImportIMAP(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	src := c.CreateAccount("imapsource@corp.test", "imap-source-pw")
	dst := c.CreateAccount("imapdest@corp.test", "imap-dest-pw")
	want := populateForMove(t, c, src.Id, 90)
	total := 0
	for _, msgs := range want.Folders {
		total += len(msgs)
	}
	// importArgs imports the source into dest, resumable with a new state file.
	importArgs := func(dest string) []string {
		return []string{"import", dest, "--imap", c.Access[0].IMAPS, "--imap-user", "imapsource@corp.test",
			"--insecure-skip-verify", "--state", filepath.Join(t.TempDir(), "import.state")}
	}
	args := importArgs("imapdest@corp.test")
	// Without --insecure-skip-verify the self-signed certificate is refused.
	cmd := mailctlCommand(c, c.Storage[0].Addr, args[:len(args)-3]...)
	cmd.Stdin = strings.NewReader("imap-source-pw\n")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Fatalf("an unverified certificate was accepted: %v\n%s", err, out)
	}
	// The first run stops after 100 messages, in the middle of INBOX's
	// second batch... of the second folder.
	out := runMailctl(t, c, "imap-source-pw\n", append(args, "--limit", "100")...)
	if !strings.Contains(out, "100 messages imported") || !strings.Contains(out, "INBOX: 90/90") || !strings.Contains(out, "insecure-skip-verify") {
		t.Fatalf("first run:\n%s", out)
	}
	partial := snapshotAccount(t, c, dst.Id)
	n := 0
	for _, msgs := range partial.Folders {
		n += len(msgs)
	}
	if n != 100 {
		t.Fatalf("after the first run: %d messages, want 100", n)
	}
	out = runMailctl(t, c, "imap-source-pw\n", args...)
	if !strings.Contains(out, fmt.Sprintf("%d messages imported", total-100)) {
		t.Fatalf("second run (want %d):\n%s", total-100, out)
	}
	compareSnapshots(t, "IMAP import", snapshotAccount(t, c, dst.Id), want)
	out = runMailctl(t, c, "imap-source-pw\n", args...)
	if !strings.Contains(out, "0 messages imported") {
		t.Fatalf("third run:\n%s", out)
	}
	compareSnapshots(t, "IMAP import, run again", snapshotAccount(t, c, dst.Id), want)

	// kill -9 right after INBOX is done, with the next folder's batch
	// probably in flight (appended or not, its state not yet written):
	// the next run finds out which from the destination.
	dst2 := c.CreateAccount("imapdest2@corp.test", "imap-dest-pw")
	args2 := importArgs("imapdest2@corp.test")
	state2 := args2[len(args2)-1]
	cmd = mailctlCommand(c, c.Storage[0].Addr, args2...)
	cmd.Stdin = strings.NewReader("imap-source-pw\n")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var acc []byte
	for !strings.Contains(string(acc), "INBOX: 90/90\n") {
		n, err := stderr.Read(buf)
		acc = append(acc, buf[:n]...)
		if err != nil {
			t.Fatalf("import ended before INBOX was done: %v\n%s", err, acc)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(state2); err != nil {
		t.Fatalf("no state file after the killed run: %v\n%s", err, acc)
	}
	runMailctl(t, c, "imap-source-pw\n", args2...)
	compareSnapshots(t, "IMAP import resumed after kill -9", snapshotAccount(t, c, dst2.Id), want)

	// A crash exactly between an append and the state update (INBOX's
	// batch is in the destination, the state still says pending): the
	// next run must see it there and not append it again.
	dst3 := c.CreateAccount("imapdest3@corp.test", "imap-dest-pw")
	args3 := importArgs("imapdest3@corp.test")
	state3 := args3[len(args3)-1]
	cmd = mailctlCommand(c, c.Storage[0].Addr, args3...)
	cmd.Env = append(cmd.Env, "MAILFLEET_TEST_IMPORT_CRASH_AFTER_APPEND=1")
	cmd.Stdin = strings.NewReader("imap-source-pw\n")
	if out, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("crashing run: %v\n%s", err, out)
	}
	if st, _ := os.ReadFile(state3); !strings.Contains(string(st), `"pending"`) {
		t.Fatalf("state after the crash has no pending batch:\n%s", st)
	}
	if n := len(snapshotAccount(t, c, dst3.Id).Folders["INBOX"]); n != 90 {
		t.Fatalf("after the crash INBOX has %d messages, want the 90 of the batch", n)
	}
	out = runMailctl(t, c, "imap-source-pw\n", args3...)
	if !strings.Contains(out, fmt.Sprintf("%d messages imported", total-90)) {
		t.Fatalf("run after the crash (want %d):\n%s", total-90, out)
	}
	compareSnapshots(t, "IMAP import resumed after a crash between append and state", snapshotAccount(t, c, dst3.Id), want)

	// STARTTLS on the plain port, without a state file.
	dst4 := c.CreateAccount("imapdest4@corp.test", "imap-dest-pw")
	out = runMailctl(t, c, "imap-source-pw\n", "import", "imapdest4@corp.test", "--imap", c.Access[0].IMAP, "--starttls",
		"--imap-user", "imapsource@corp.test", "--insecure-skip-verify", "--limit", "20")
	if got := snapshotAccount(t, c, dst4.Id).Folders["INBOX"]; !strings.Contains(out, "20 messages imported") || len(got) != 20 ||
		!bytes.Equal(got[19].Body, want.Folders["INBOX"][19].Body) {
		t.Fatalf("STARTTLS import: %d messages\n%s", len(got), out)
	}
}
