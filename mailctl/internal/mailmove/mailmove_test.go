package mailmove

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func body(t *testing.T, m Message) string {
	t.Helper()
	r, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, path, content string, mtime time.Time) {
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

// A Maildir as Dovecot leaves it: folders, keywords, new/, uidlist order,
// a name without a time (mtime), subscriptions (version 2), an escaped
// and a modified UTF-7 folder name.
func TestReadMaildirDovecotLayout(t *testing.T) {
	root := t.TempDir()
	mtime := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, d := range []string{"", ".Work", ".Work.Projects", ".Caf&AOk-", `.a\2eb`} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(root, d, sub), 0o700)
		}
	}
	write(t, filepath.Join(root, "cur", "1600000002.M2P1.host,S=5:2,FS"), "two\r\n", time.Time{})
	write(t, filepath.Join(root, "cur", "1600000001.M1P1.host,S=5:2,RSab"), "one\r\n", time.Time{})
	write(t, filepath.Join(root, "new", "1600000003.M3P1.host"), "three\n", time.Time{})
	write(t, filepath.Join(root, "cur", "noTime:2,DPT"), "four\n", mtime)
	write(t, filepath.Join(root, "dovecot-keywords"), "0 $Label1\n1 Important\n", time.Time{})
	// The uidlist puts "two" before "one".
	write(t, filepath.Join(root, "dovecot-uidlist"), "3 V1 N3\n1 :1600000002.M2P1.host,S=5\n2 :1600000001.M1P1.host,S=5\n", time.Time{})
	write(t, filepath.Join(root, ".Work.Projects", "cur", "1500000000.x:2,c"), "p\n", time.Time{})
	write(t, filepath.Join(root, ".Work.Projects", "dovecot-keywords"), "2 Later\n", time.Time{})
	write(t, filepath.Join(root, "subscriptions"), "V\t2\n\nINBOX\nWork\tProjects\n", time.Time{})
	folders, err := ReadMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Name)
	}
	if want := []string{"INBOX", "Café", "Work", "Work/Projects", "a.b"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("folders %q, want %q", names, want)
	}
	inbox := folders[0]
	if !inbox.Subscribed || folders[2].Subscribed || !folders[3].Subscribed {
		t.Fatalf("subscriptions: %+v", folders)
	}
	type got struct {
		body  string
		flags []string
		date  time.Time
	}
	var msgs []got
	for _, m := range inbox.Messages {
		flags, _ := cleanFlags(m.Flags)
		msgs = append(msgs, got{body(t, m), flags, m.Date.UTC()})
	}
	want := []got{
		{"two\r\n", []string{`\Flagged`, `\Seen`}, time.Unix(1600000002, 0).UTC()},
		{"one\r\n", []string{`$Label1`, `Important`, `\Answered`, `\Seen`}, time.Unix(1600000001, 0).UTC()},
		{"four\n", []string{`$Forwarded`, `\Deleted`, `\Draft`}, mtime},
		{"three\n", nil, time.Unix(1600000003, 0).UTC()},
	}
	// Not in the uidlist: by date ("four", May 2020 by its mtime, before
	// "three", September 2020 by its name).
	if !reflect.DeepEqual(msgs, want) {
		t.Fatalf("INBOX:\n got %+v\nwant %+v", msgs, want)
	}
	p := folders[3].Messages
	if len(p) != 1 || !reflect.DeepEqual(p[0].Flags, []string{"Later"}) {
		t.Fatalf("Work/Projects: %+v", p)
	}
}

// What MaildirWriter writes, ReadMaildir reads back the same.
func TestMaildirWriteRead(t *testing.T) {
	root := filepath.Join(t.TempDir(), "out")
	w, err := NewMaildirWriter(root)
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	in := map[string][]struct {
		body  string
		flags []string
	}{
		"INBOX":        {{"a\r\n", []string{`\Seen`, `$Forwarded`, "kw1"}}, {"From x\nb\n", nil}},
		"Déjà vu/a.b":  {{"c", []string{"kw2", "kw1", `\Draft`}}},
		"Archive/2019": {},
	}
	for _, name := range []string{"INBOX", "Déjà vu/a.b", "Archive/2019"} {
		f, err := w.Folder(name, name != "Archive/2019")
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range in[name] {
			if err := f.Add(strings.NewReader(m.body), m.flags, date.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	folders, err := ReadMaildir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(folders) != 3 {
		t.Fatalf("folders: %+v", folders)
	}
	for _, f := range folders {
		want := in[f.Name]
		if len(f.Messages) != len(want) || f.Subscribed != (f.Name != "Archive/2019") {
			t.Fatalf("%s: %d messages (subscribed %v), want %d", f.Name, len(f.Messages), f.Subscribed, len(want))
		}
		for i, m := range f.Messages {
			wf, _ := cleanFlags(want[i].flags)
			gf, _ := cleanFlags(m.Flags)
			if body(t, m) != want[i].body || !reflect.DeepEqual(gf, wf) || !m.Date.Equal(date.Add(time.Duration(i)*time.Second)) {
				t.Fatalf("%s #%d: %q %v %v", f.Name, i, body(t, m), gf, m.Date)
			}
		}
	}
}

func TestReadMbox(t *testing.T) {
	mbox := "From alice@example.org Sat Jan  3 01:05:34 1996\n" +
		"Subject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1 Work\n\n" +
		">From the start\n>>From quoted twice\nFrom: not a separator? no, it is a header-looking line\n\n" +
		"From bob@example.org Mon Nov 30 08:48:10 2026\n" +
		"Status: O\nSubject: two\r\n\r\nbody\r\n\n"
	var got []Message
	if err := ReadMbox(strings.NewReader(mbox), func(m Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	// "From: not..." starts with "From:" not "From ": part of message one.
	if len(got) != 2 {
		t.Fatalf("%d messages", len(got))
	}
	if b := body(t, got[0]); b != "Subject: one\n\nFrom the start\n>From quoted twice\nFrom: not a separator? no, it is a header-looking line\n" {
		t.Fatalf("message 1: %q", b)
	}
	if f, _ := cleanFlags(got[0].Flags); !reflect.DeepEqual(f, []string{"$Label1", "Work", `\Answered`, `\Flagged`, `\Seen`}) {
		t.Fatalf("flags 1: %v", f)
	}
	if !got[0].Date.Equal(time.Date(1996, 1, 3, 1, 5, 34, 0, time.UTC)) {
		t.Fatalf("date 1: %v", got[0].Date)
	}
	if b := body(t, got[1]); b != "Subject: two\r\n\r\nbody\r\n" || len(got[1].Flags) != 0 {
		t.Fatalf("message 2: %q %v", b, got[1].Flags)
	}
}

func TestMboxWriteRead(t *testing.T) {
	msgs := []struct {
		body  string
		flags []string
	}{
		{"From the first line\r\nSubject: x\r\n\r\nFrom me\r\n>From you\r\n", []string{`\Seen`, `\Answered`, "$Forwarded"}},
		{"no newline at the end", nil},
		{"Subject: y\n\n\n\n", []string{`\Deleted`, `\Draft`, `\Flagged`}},
		{"", nil},
		{strings.Repeat("x", 200000) + "\nFrom " + strings.Repeat("y", 70000) + "\n", []string{"a"}},
	}
	var buf bytes.Buffer
	w := NewMboxWriter(&buf)
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, m := range msgs {
		if err := w.Add(strings.NewReader(m.body), m.flags, date.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	var got []Message
	if err := ReadMbox(&buf, func(m Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages, want %d", len(got), len(msgs))
	}
	for i, m := range msgs {
		wf, _ := cleanFlags(m.flags)
		gf, _ := cleanFlags(got[i].Flags)
		if b := body(t, got[i]); b != m.body {
			t.Fatalf("message %d: %q, want %q", i, b[:min(len(b), 100)], m.body[:min(len(m.body), 100)])
		}
		if !reflect.DeepEqual(gf, wf) || !got[i].Date.Equal(date.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("message %d: %v %v", i, gf, got[i].Date)
		}
	}
}

func TestMUTF7(t *testing.T) {
	for _, s := range []string{"Café", "日本語 & more", "plain", "a&b"} {
		if got := decodeMUTF7(encodeMUTF7(s)); got != s {
			t.Fatalf("%q → %q → %q", s, encodeMUTF7(s), got)
		}
	}
	if got := encodeMUTF7("Café"); got != "Caf&AOk-" {
		t.Fatalf("encode: %q", got)
	}
}
