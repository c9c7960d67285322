package e2e

import (
	"bytes"
	"io"
	"net/http"

	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/test/cluster"
)

const multipartMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.test\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with parts\r\n" +
	"Date: Tue, 03 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <parts@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n" +
	"\r\n" +
	"--XX\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"hello needle world\r\n" +
	"--XX\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAwQ=\r\n" +
	"--XX--\r\n"

func startIMAP(t *testing.T) (*cluster.Cluster, *imapclient.Client) {
	t.Helper()
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("user@example.test", "user-secret")
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "user@example.test", "user-secret")
	return c, cl
}

func bodySection(msg *imapclient.FetchMessageBuffer, section *imap.FetchItemBodySection) []byte {
	for _, s := range msg.BodySection {
		if s.Section.Specifier == section.Specifier && len(s.Section.Part) == len(section.Part) &&
			(section.Partial == nil) == (s.Section.Partial == nil) && len(s.Section.HeaderFields) == len(section.HeaderFields) {
			return s.Bytes
		}
	}
	return nil
}

// APPEND and every FETCH item, with the exact bytes back.
func TestIMAPAppendAndFetch(t *testing.T) {
	c, cl := startIMAP(t)
	date := time.Date(2026, 11, 1, 12, 30, 0, 0, time.UTC)
	data := appendMsg(t, cl, "INBOX", []byte(multipartMsg), &imap.AppendOptions{Flags: []imap.Flag{"$Important"}, Time: date})
	if data.UID != 1 || data.UIDValidity == 0 {
		t.Fatalf("APPENDUID %+v", data)
	}
	sel, err := cl.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 || sel.UIDNext != 2 {
		t.Fatalf("select: %+v %v", sel, err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	subject := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 2, Size: 10}, Peek: true}
	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{full, header, subject, text, part1},
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	m := msgs[0]
	if m.UID != 1 || !m.InternalDate.Equal(date) || m.RFC822Size != int64(len(multipartMsg)) {
		t.Fatalf("uid %d date %v size %d", m.UID, m.InternalDate, m.RFC822Size)
	}
	if m.Flags = storedFlags(m.Flags); len(m.Flags) != 1 || m.Flags[0] != "$Important" {
		t.Fatalf("flags %v", m.Flags)
	}
	env := m.Envelope
	if env == nil || env.Subject != "Grüße with parts" || len(env.From) != 1 || env.From[0].Name != "Alice" || env.MessageID != "parts@example.org" || len(env.Sender) != 1 {
		t.Fatalf("envelope %+v", env)
	}
	if got := bodySection(m, full); !bytes.Equal(got, []byte(multipartMsg)) {
		t.Fatalf("BODY[] differs: %q", got)
	}
	hdrEnd := strings.Index(multipartMsg, "\r\n\r\n") + 4
	if got := bodySection(m, header); string(got) != multipartMsg[:hdrEnd] {
		t.Fatalf("BODY[HEADER] = %q", got)
	}
	if got := string(bodySection(m, subject)); !strings.HasPrefix(got, "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with parts\r\n") || strings.Contains(got, "From:") {
		t.Fatalf("BODY[HEADER.FIELDS (SUBJECT)] = %q", got)
	}
	if got := string(bodySection(m, text)); got != multipartMsg[hdrEnd+2:hdrEnd+12] {
		t.Fatalf("BODY[TEXT]<2.10> = %q, want %q", got, multipartMsg[hdrEnd+2:hdrEnd+12])
	}
	if got := string(bodySection(m, part1)); got != "hello needle world" && got != "hello needle world\r\n" {
		t.Fatalf("BODY[1] = %q", got)
	}
	if len(m.BinarySection) != 1 || !bytes.Equal(m.BinarySection[0].Bytes, []byte{0, 1, 2, 3, 4}) {
		t.Fatalf("BINARY[2] = %v", m.BinarySection)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", m.BodyStructure)
	}
	// PEEK left \Seen alone; BODY[] sets it and says so.
	msgs, err = cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}).Collect()
	if err != nil || len(storedFlags(msgs[0].Flags)) != 2 {
		t.Fatalf("fetch BODY[TEXT] flags: %v %v", msgs, err)
	}
	st, err := cl.Status("INBOX", &imap.StatusOptions{NumUnseen: true, Size: true, NumMessages: true}).Wait()
	if err != nil || *st.NumUnseen != 0 || *st.Size != int64(len(multipartMsg)) || *st.NumMessages != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	// The ops endpoint counts what happened.
	resp, err := http.Get("http://" + c.Access[0].Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`mailfleet_access_commands_total{command="FETCH",proto="imap",result="ok"} 2`,
		`mailfleet_access_commands_total{command="APPEND",proto="imap",result="ok"} 1`,
		`mailfleet_access_logins_total{proto="imap",result="ok"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE and EXAMINE.
func TestIMAPStoreCopyMoveExpunge(t *testing.T) {
	_, cl := startIMAP(t)
	for i := 1; i <= 5; i++ {
		appendMsg(t, cl, "INBOX", message(i), nil)
	}
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Store(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 2}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "Work"}}, nil).Collect()
	if err != nil || len(msgs) != 2 || len(storedFlags(msgs[0].Flags)) != 2 {
		t.Fatalf("STORE +FLAGS: %v %v", msgs, err)
	}
	msgs, err = cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{"work"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || len(storedFlags(msgs[0].Flags)) != 1 || storedFlags(msgs[0].Flags)[0] != imap.FlagSeen {
		t.Fatalf("STORE -FLAGS keyword (case-insensitive): %v %v", msgs, err)
	}
	msgs, err = cl.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagAnswered}, Silent: true}, nil).Collect()
	if err != nil || len(msgs) != 0 {
		t.Fatalf("STORE FLAGS.SILENT answered with %v %v", msgs, err)
	}
	cp, err := cl.Copy(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 2}}, "Archive").Wait()
	if err != nil || cp.UIDValidity == 0 || cp.SourceUIDs.String() != "1:2" || cp.DestUIDs.String() != "1:2" {
		t.Fatalf("COPY: %+v %v", cp, err)
	}
	if _, err := cl.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("COPY to a missing mailbox: %v", err)
	}
	mv, err := cl.Move(imap.UIDSetNum(4), "Trash").Wait()
	if err != nil || mv.SourceUIDs.String() != "4" || mv.DestUIDs.String() != "1" {
		t.Fatalf("UID MOVE: %+v %v", mv, err)
	}
	// UID 5 is now sequence 4.
	msgs, err = cl.Fetch(imap.SeqSetNum(4), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 5 {
		t.Fatalf("after MOVE, seq 4 = %v %v", msgs, err)
	}
	cl.Store(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close()
	exp, err := cl.UIDExpunge(imap.UIDSetNum(2)).Collect()
	if err != nil || len(exp) != 1 || exp[0] != 2 {
		t.Fatalf("UID EXPUNGE 2: %v %v", exp, err)
	}
	exp, err = cl.Expunge().Collect()
	if err != nil || len(exp) != 3 {
		t.Fatalf("EXPUNGE: %v %v", exp, err)
	}
	// EXAMINE is read-only.
	if _, err := cl.Select("Archive", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Fatal("STORE succeeded in an EXAMINEd mailbox")
	}
	// CLOSE expunges \Deleted in a SELECTed mailbox.
	if _, err := cl.Select("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cl.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close()
	if err := cl.Unselect().Wait(); err != nil { // UNSELECT does not expunge
		t.Fatal(err)
	}
	st, _ := cl.Status("Archive", &imap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 2 {
		t.Fatalf("UNSELECT expunged: %d left", *st.NumMessages)
	}
	if _, err := cl.Select("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	st, _ = cl.Status("Archive", &imap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 1 {
		t.Fatalf("CLOSE did not expunge: %d left", *st.NumMessages)
	}
}

// SEARCH criteria, ESEARCH results and SEARCHRES.
func TestIMAPSearch(t *testing.T) {
	_, cl := startIMAP(t)
	appendMsg(t, cl, "INBOX", []byte(multipartMsg), &imap.AppendOptions{Time: time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)})
	appendMsg(t, cl, "INBOX", message(2), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)})
	big := append([]byte("Subject: big one\r\nFrom: carol@example.net\r\n\r\n"), bytes.Repeat([]byte("x"), 5000)...)
	appendMsg(t, cl, "INBOX", big, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)})
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		crit imap.SearchCriteria
		want string
	}{
		{"all", imap.SearchCriteria{}, "1:3"},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, "1,3"},
		{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, "3"},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "grüße"}}}, "1"},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "carol"}}}, "3"},
		{"body", imap.SearchCriteria{Body: []string{"NEEDLE"}}, "1"},
		{"text matches headers", imap.SearchCriteria{Text: []string{"example.net"}}, "3"},
		{"larger", imap.SearchCriteria{Larger: 1000}, "3"},
		{"smaller", imap.SearchCriteria{Smaller: 1000}, "1:2"},
		{"since", imap.SearchCriteria{Since: time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)}, "2:3"},
		{"before", imap.SearchCriteria{Before: time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)}, "1"},
		{"sent since", imap.SearchCriteria{SentSince: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}, "1"},
		{"uid", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2, 3)}}, "2:3"},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}}}, "1,3"},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Body: []string{"needle"}}}}}, "1,3"},
	}
	for _, tc := range cases {
		data, err := cl.Search(&tc.crit, nil).Wait()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := data.All.String(); got != tc.want {
			t.Errorf("SEARCH %s = %s, want %s", tc.name, got, tc.want)
		}
	}
	es, err := cl.UIDSearch(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || es.Min != 1 || es.Max != 3 || es.Count != 3 {
		t.Fatalf("ESEARCH: %+v %v", es, err)
	}
}
