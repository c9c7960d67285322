package milter

import (
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// fake is a milter built on the library's server side. Each hook may be nil
// (continue; accept at the end of the message).
type fake struct {
	gomilter.NoOpMilter
	rec  *record
	mail func(from string) (*gomilter.Response, error)
	rcpt func(to string) (*gomilter.Response, error)
	eom  func(m gomilter.Modifier) (*gomilter.Response, error)
}

// record is what the fake was told, by every connection.
type record struct {
	mu      sync.Mutex
	events  []string
	headers []string
	body    strings.Builder
	macros  map[string]string
}

func (r *record) add(e string) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }

func (r *record) snapshot() ([]string, []string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...), append([]string(nil), r.headers...), r.body.String()
}

func (f *fake) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.add("connect " + host + " " + family + " " + addr)
	f.rec.mu.Lock()
	f.rec.macros = map[string]string{"j": m.Get(gomilter.MacroMTAFQDN)}
	f.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (f *fake) Helo(name string, _ gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.add("helo " + name)
	return gomilter.RespContinue, nil
}

func (f *fake) MailFrom(from, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.add("mail " + from)
	if f.mail != nil {
		return f.mail(from)
	}
	return gomilter.RespContinue, nil
}

func (f *fake) RcptTo(to, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.add("rcpt " + to)
	if f.rcpt != nil {
		return f.rcpt(to)
	}
	return gomilter.RespContinue, nil
}

func (f *fake) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.mu.Lock()
	f.rec.headers = append(f.rec.headers, name+"="+value)
	f.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (f *fake) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.mu.Lock()
	f.rec.body.Write(chunk)
	f.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (f *fake) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	f.rec.mu.Lock()
	f.rec.macros["i"] = m.Get(gomilter.MacroQueueId)
	f.rec.mu.Unlock()
	f.rec.add("eom")
	if f.eom != nil {
		return f.eom(m)
	}
	return gomilter.RespAccept, nil
}

func (f *fake) Abort(gomilter.Modifier) error { f.rec.add("abort"); return nil }

// startFake serves f on a random loopback port and returns its address.
func startFake(t *testing.T, f fake) (string, *record) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { m := f; m.rec = rec; return &m }),
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptQuarantine|
			gomilter.OptChangeBody|gomilter.OptAddRcpt|gomilter.OptRemoveRcpt),
	)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), rec
}

// counter collects Config.Count calls.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) count(action string) { c.mu.Lock(); c.n[action]++; c.mu.Unlock() }

func (c *counter) get(action string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.n[action] }

func newFilter(t *testing.T, addr string, failOpen bool) (*Filter, *counter) {
	t.Helper()
	c := &counter{n: map[string]int{}}
	f, err := New(Config{Address: addr, Timeout: time.Second, FailOpen: failOpen, Hostname: "mx.example.test",
		Count: c.count, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

var client = Client{IP: net.ParseIP("192.0.2.7"), Port: 40000, Helo: "sender.example"}

const message = "Received: from sender.example\r\n\tby mx.example.test\r\n" +
	"Subject: hello\r\n" +
	"X-Spam: old\r\n" +
	"From: a@sender.example\r\n" +
	"\r\n" +
	"body line 1\r\nbody line 2\r\n"

// begin starts a transaction for one recipient and fails on any refusal.
func begin(t *testing.T, f *Filter, rcpts ...string) *Transaction {
	t.Helper()
	tx, reply := f.Start(client, "a@sender.example", slog.New(slog.DiscardHandler))
	if reply != nil {
		t.Fatalf("MAIL refused: %+v", reply)
	}
	for _, r := range rcpts {
		if reply := tx.Rcpt(r); reply != nil {
			t.Fatalf("RCPT %s refused: %+v", r, reply)
		}
	}
	return tx
}

// The filter is told the connection, HELO, sender, recipients, every header
// field (values without the leading blank, folding kept) and the body after
// the empty line; its header changes are made in the order sent, with
// smfi_chgheader's and smfi_insheader's indexes.
func TestAcceptWithHeaderChanges(t *testing.T) {
	addr, rec := startFake(t, fake{eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.AddHeader("X-Spamd-Result", "default: False [0.00 / 15.00]\n\tSYMBOL(0.00)")
		m.InsertHeader(0, "X-Rspamd-Queue-Id", "Q1")
		m.ChangeHeader(1, "X-Spam", "") // deleted
		m.ChangeHeader(1, "Subject", "[filtered] hello")
		return gomilter.RespAccept, nil
	}})
	f, counts := newFilter(t, addr, false)
	tx := begin(t, f, "b@example.test")
	v := tx.Data("QID1", strings.NewReader(message))
	tx.Close()
	if v.Action != Accept || v.Reply != nil {
		t.Fatalf("verdict %+v, want accept", v)
	}
	events, headers, body := rec.snapshot()
	wantEvents := []string{"connect [192.0.2.7] tcp4 192.0.2.7", "helo sender.example", "mail a@sender.example", "rcpt b@example.test", "eom"}
	if !reflect.DeepEqual(events, wantEvents) {
		t.Errorf("filter was told %q, want %q", events, wantEvents)
	}
	wantHeaders := []string{"Received=from sender.example\r\n\tby mx.example.test", "Subject=hello", "X-Spam=old", "From=a@sender.example"}
	if !reflect.DeepEqual(headers, wantHeaders) {
		t.Errorf("filter got headers %q, want %q", headers, wantHeaders)
	}
	if body != "body line 1\r\nbody line 2\r\n" {
		t.Errorf("filter got body %q", body)
	}
	if rec.macros["j"] != "mx.example.test" || rec.macros["i"] != "QID1" {
		t.Errorf("macros %v, want j=mx.example.test and i=QID1", rec.macros)
	}
	out, size, err := v.Rewrite(strings.NewReader(message), int64(len(message)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	want := "X-Rspamd-Queue-Id: Q1\r\n" +
		"Received: from sender.example\r\n\tby mx.example.test\r\n" +
		"Subject: [filtered] hello\r\n" +
		"From: a@sender.example\r\n" +
		"X-Spamd-Result: default: False [0.00 / 15.00]\r\n\tSYMBOL(0.00)\r\n" +
		"\r\n" +
		"body line 1\r\nbody line 2\r\n"
	if string(got) != want {
		t.Errorf("rewritten message:\n%q\nwant\n%q", got, want)
	}
	if size != int64(len(want)) {
		t.Errorf("size %d, want %d", size, len(want))
	}
	if counts.get(CountAccept) != 1 {
		t.Errorf("counts %v, want one accept", counts.n)
	}
}

// smfi_replacebody replaces the body (stored with CRLF line ends whatever
// the filter sent) and smfi_delrcpt takes a recipient off; smfi_addrcpt is
// not carried out (the MX delivers only to recipients it accepted).
func TestBodyAndRecipientChanges(t *testing.T) {
	addr, _ := startFake(t, fake{eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.ReplaceBody(strings.NewReader("new\nbody\r\n"))
		m.DeleteRecipient("c@example.test")
		m.AddRecipient("x@elsewhere.example", "")
		return gomilter.RespAccept, nil
	}})
	f, _ := newFilter(t, addr, false)
	tx := begin(t, f, "b@example.test", "c@example.test")
	defer tx.Close()
	v := tx.Data("Q", strings.NewReader(message))
	if v.Action != Accept || !reflect.DeepEqual(v.Removed, []string{"c@example.test"}) {
		t.Fatalf("verdict %+v, want accept without c@example.test", v)
	}
	out, size, err := v.Rewrite(strings.NewReader(message), int64(len(message)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out)
	header, _, _ := strings.Cut(message, "\r\n\r\n")
	if want := header + "\r\n\r\nnew\r\nbody\r\n"; string(got) != want || size != int64(len(want)) {
		t.Fatalf("rewritten (%d bytes):\n%q\nwant (%d bytes)\n%q", size, got, len(want), want)
	}
}

// smfi_replycode: the filter's own code and text reach the client; a 4xx
// is a temporary failure, a 5xx a rejection (libmilter's SMFIS_TEMPFAIL
// and SMFIS_REJECT without a code are 451 4.7.1 and 550 5.7.1).
func TestRefusalsAtEndOfMessage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resp   func() (*gomilter.Response, error)
		action Action
		reply  Reply
		count  string
	}{
		{"reply code", func() (*gomilter.Response, error) {
			return gomilter.RejectWithCodeAndReason(554, "5.7.1 Spam message rejected")
		}, Reject, Reply{554, [3]int{5, 7, 1}, "Spam message rejected"}, CountReject},
		{"reject", func() (*gomilter.Response, error) { return gomilter.RespReject, nil },
			Reject, Reply{550, [3]int{5, 7, 1}, "Command rejected"}, CountReject},
		{"tempfail", func() (*gomilter.Response, error) { return gomilter.RespTempFail, nil },
			TempFail, Reply{451, [3]int{4, 7, 1}, "Service unavailable - try again later"}, CountTempFail},
		{"soft reject code", func() (*gomilter.Response, error) {
			return gomilter.RejectWithCodeAndReason(451, "4.7.1 Try again later")
		}, TempFail, Reply{451, [3]int{4, 7, 1}, "Try again later"}, CountTempFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := startFake(t, fake{eom: func(gomilter.Modifier) (*gomilter.Response, error) { return tc.resp() }})
			f, counts := newFilter(t, addr, false)
			tx := begin(t, f, "b@example.test")
			defer tx.Close()
			v := tx.Data("Q", strings.NewReader(message))
			if v.Action != tc.action || v.Reply == nil || *v.Reply != tc.reply {
				t.Fatalf("verdict %v %+v, want %v %+v", v.Action, v.Reply, tc.action, tc.reply)
			}
			if counts.get(tc.count) != 1 {
				t.Errorf("counts %v, want one %s", counts.n, tc.count)
			}
		})
	}
}

// A recipient refused by the filter (xxfi_envrcpt's SMFIS_REJECT) is refused
// alone; the message goes on for the others.
func TestRecipientRefusal(t *testing.T) {
	addr, rec := startFake(t, fake{rcpt: func(to string) (*gomilter.Response, error) {
		if to == "spamtrap@example.test" {
			return gomilter.RejectWithCodeAndReason(550, "5.1.1 Not for you")
		}
		return gomilter.RespContinue, nil
	}})
	f, _ := newFilter(t, addr, false)
	tx := begin(t, f, "b@example.test")
	defer tx.Close()
	reply := tx.Rcpt("spamtrap@example.test")
	if reply == nil || *reply != (Reply{550, [3]int{5, 1, 1}, "Not for you"}) {
		t.Fatalf("RCPT reply %+v, want 550 5.1.1", reply)
	}
	if reply := tx.Rcpt("c@example.test"); reply != nil {
		t.Fatalf("a later recipient is refused too: %+v", reply)
	}
	if v := tx.Data("Q", strings.NewReader(message)); v.Action != Accept {
		t.Fatalf("verdict %+v, want accept", v)
	}
	if events, _, _ := rec.snapshot(); events[len(events)-1] != "eom" {
		t.Fatalf("the message did not reach the filter: %q", events)
	}
}

// A refused sender refuses MAIL; nothing more is sent.
func TestSenderRefusal(t *testing.T) {
	addr, rec := startFake(t, fake{mail: func(string) (*gomilter.Response, error) { return gomilter.RespTempFail, nil }})
	f, _ := newFilter(t, addr, false)
	tx, reply := f.Start(client, "a@sender.example", slog.New(slog.DiscardHandler))
	defer tx.Close()
	if reply == nil || reply.Code != 451 {
		t.Fatalf("MAIL reply %+v, want 451", reply)
	}
	if reply := tx.Rcpt("b@example.test"); reply != nil {
		t.Fatalf("RCPT after a refused MAIL: %+v", reply)
	}
	time.Sleep(50 * time.Millisecond) // the server records asynchronously
	if events, _, _ := rec.snapshot(); strings.Contains(strings.Join(events, ","), "rcpt") {
		t.Fatalf("the filter was sent a recipient after refusing the sender: %q", events)
	}
}

// SMFIS_DISCARD from xxfi_envrcpt discards the whole message (libmilter:
// "accept this message, but silently discard it"), as it does at the end.
func TestDiscard(t *testing.T) {
	discard := func() (*gomilter.Response, error) { return gomilter.RespDiscard, nil }
	t.Run("at RCPT", func(t *testing.T) {
		addr, rec := startFake(t, fake{rcpt: func(string) (*gomilter.Response, error) { return discard() }})
		f, counts := newFilter(t, addr, false)
		tx := begin(t, f, "b@example.test")
		defer tx.Close()
		if v := tx.Data("Q", strings.NewReader(message)); v.Action != Discard {
			t.Fatalf("verdict %+v, want discard", v)
		}
		if events, _, _ := rec.snapshot(); strings.Contains(strings.Join(events, ","), "eom") {
			t.Fatalf("the message was sent after a discard: %q", events)
		}
		if counts.get(CountDiscard) != 1 {
			t.Errorf("counts %v", counts.n)
		}
	})
	t.Run("at the end", func(t *testing.T) {
		addr, _ := startFake(t, fake{eom: func(gomilter.Modifier) (*gomilter.Response, error) { return discard() }})
		f, _ := newFilter(t, addr, false)
		tx := begin(t, f, "b@example.test")
		defer tx.Close()
		if v := tx.Data("Q", strings.NewReader(message)); v.Action != Discard {
			t.Fatalf("verdict %+v, want discard", v)
		}
	})
}

// smfi_quarantine: the message is accepted into quarantine, with the
// filter's header changes.
func TestQuarantine(t *testing.T) {
	addr, _ := startFake(t, fake{eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
		m.AddHeader("X-Spam", "Yes")
		m.Quarantine("Gtube pattern")
		return gomilter.RespAccept, nil
	}})
	f, counts := newFilter(t, addr, false)
	tx := begin(t, f, "b@example.test")
	defer tx.Close()
	v := tx.Data("Q", strings.NewReader(message))
	if v.Action != Quarantine || v.Reason != "Gtube pattern" {
		t.Fatalf("verdict %+v, want quarantine", v)
	}
	out, _, err := v.Rewrite(strings.NewReader(message), int64(len(message)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(out); !strings.Contains(string(got), "X-Spam: Yes\r\n\r\nbody") {
		t.Fatalf("the quarantined message lacks the filter's header: %q", got)
	}
	if counts.get(CountQuarantine) != 1 {
		t.Errorf("counts %v", counts.n)
	}
}

// The filter down: fail-open filters nothing and counts it; fail-closed
// answers 451 4.7.1 at MAIL, at every RCPT and at the end of DATA.
func TestFilterDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	f, counts := newFilter(t, addr, true)
	tx := begin(t, f, "b@example.test")
	if v := tx.Data("Q", strings.NewReader(message)); v.Action != Accept || len(v.changes) != 0 {
		t.Fatalf("fail-open verdict %+v, want accept", v)
	}
	tx.Close()
	if counts.get(CountFailOpen) != 1 {
		t.Errorf("fail-open counts %v, want one fail-open", counts.n)
	}

	f, counts = newFilter(t, addr, false)
	tx, reply := f.Start(client, "a@sender.example", slog.New(slog.DiscardHandler))
	defer tx.Close()
	if reply == nil || *reply != *tempFail {
		t.Fatalf("fail-closed MAIL reply %+v, want 451 4.7.1", reply)
	}
	if reply := tx.Rcpt("b@example.test"); reply == nil || reply.Code != 451 {
		t.Fatalf("fail-closed RCPT reply %+v, want 451", reply)
	}
	if v := tx.Data("Q", strings.NewReader(message)); v.Action != TempFail || v.Reply.Code != 451 {
		t.Fatalf("fail-closed verdict %+v, want 451", v)
	}
	if counts.get(CountFailClosed) != 1 {
		t.Errorf("fail-closed counts %v, want one fail-closed", counts.n)
	}
}

// A filter slower than the timeout counts as down.
func TestFilterSlow(t *testing.T) {
	addr, _ := startFake(t, fake{eom: func(gomilter.Modifier) (*gomilter.Response, error) {
		time.Sleep(1500 * time.Millisecond) // the timeout is 1s
		return gomilter.RespReject, nil
	}})
	for _, failOpen := range []bool{true, false} {
		f, _ := newFilter(t, addr, failOpen)
		tx := begin(t, f, "b@example.test")
		start := time.Now()
		v := tx.Data("Q", strings.NewReader(message))
		tx.Close()
		if elapsed := time.Since(start); elapsed > 1400*time.Millisecond {
			t.Errorf("fail-open %v: waited %v for a filter with a 1s timeout", failOpen, elapsed)
		}
		want := TempFail
		if failOpen {
			want = Accept
		}
		if v.Action != want {
			t.Errorf("fail-open %v: verdict %+v, want %v", failOpen, v, want)
		}
	}
}

// No filter configured: a nil Filter and its nil transactions accept all.
func TestNoFilter(t *testing.T) {
	var f *Filter
	tx, reply := f.Start(client, "a@b", nil)
	if tx != nil || reply != nil || tx.Rcpt("x@y") != nil || tx.Data("Q", strings.NewReader(message)).Action != Accept {
		t.Fatal("a nil filter refused something")
	}
	tx.Close()
}

func TestApplyChanges(t *testing.T) {
	fields, _, err := readHeader(strings.NewReader("A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	change := func(typ gomilter.ModifyActionType, idx uint32, name, value string) gomilter.ModifyAction {
		return gomilter.ModifyAction{Type: typ, HeaderIndex: idx, HeaderName: name, HeaderValue: value}
	}
	for _, tc := range []struct {
		name    string
		changes []gomilter.ModifyAction
		want    string
	}{
		{"change the second A", []gomilter.ModifyAction{change(gomilter.ActionChangeHeader, 2, "a", "x")},
			"A: 1\r\nB: 2\r\nnot a field\r\na: x\r\n"},
		{"index past the last adds", []gomilter.ModifyAction{change(gomilter.ActionChangeHeader, 3, "A", "x")},
			"A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\nA: x\r\n"},
		{"deleting past the last does nothing", []gomilter.ModifyAction{change(gomilter.ActionChangeHeader, 3, "A", "")},
			"A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\n"},
		{"deletions leave the count at once", []gomilter.ModifyAction{
			change(gomilter.ActionChangeHeader, 1, "A", ""), change(gomilter.ActionChangeHeader, 1, "A", "")},
			"B: 2\r\nnot a field\r\n"},
		{"insert after the second field, past the non-field", []gomilter.ModifyAction{change(gomilter.ActionInsertHeader, 2, "C", "c")},
			"A: 1\r\nB: 2\r\nC: c\r\nnot a field\r\nA: 3\r\n"},
		{"insert far past the end appends", []gomilter.ModifyAction{change(gomilter.ActionInsertHeader, 99, "C", "c")},
			"A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\nC: c\r\n"},
		{"no header injection", []gomilter.ModifyAction{change(gomilter.ActionAddHeader, 0, "C", "c\nBcc: evil\n\nbody\r")},
			"A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\nC: c\r\n\tBcc: evil\r\n\tbody\r\n"},
		{"bad names ignored", []gomilter.ModifyAction{change(gomilter.ActionAddHeader, 0, "Bad Name", "x"), change(gomilter.ActionAddHeader, 0, "", "x")},
			"A: 1\r\nB: 2\r\nnot a field\r\nA: 3\r\n"},
	} {
		var b strings.Builder
		for _, f := range applyChanges(append([]field(nil), fields...), tc.changes) {
			b.WriteString(f.raw)
		}
		if b.String() != tc.want {
			t.Errorf("%s:\n%q\nwant\n%q", tc.name, b.String(), tc.want)
		}
	}
}

func TestParseReply(t *testing.T) {
	for raw, want := range map[string]Reply{
		"554 5.7.1 Spam message rejected":                  {554, [3]int{5, 7, 1}, "Spam message rejected"},
		"554-5.7.1 first line\r\n554 5.7.1 second\x00line": {554, [3]int{5, 7, 1}, "first line\nsecondline"},
		"554 4.7.1 class mismatch":                         {554, [3]int{}, "class mismatch"},
		"550 no enhanced code":                             {550, [3]int{}, "no enhanced code"},
		"550 ":                                             {550, [3]int{}, "Refused by the content filter"},
	} {
		code := raw[:3]
		n := uint16((code[0]-'0'))*100 + uint16(code[1]-'0')*10 + uint16(code[2]-'0')
		if got := parseReply(n, raw); *got != want {
			t.Errorf("parseReply(%q) = %+v, want %+v", raw, *got, want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"rspamd:11332":          {"tcp", "rspamd:11332"},
		"inet:127.0.0.1:11332":  {"tcp", "127.0.0.1:11332"},
		"unix:/run/milter.sock": {"unix", "/run/milter.sock"},
	} {
		n, a, err := parseAddress(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("parseAddress(%q) = %q %q %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"", "rspamd", "unix:", "inet:nohostport"} {
		if _, _, err := parseAddress(bad); err == nil {
			t.Errorf("parseAddress(%q) accepted", bad)
		}
	}
}
