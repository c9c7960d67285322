package imapconn

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// render runs f on a fresh Encoder and returns what it wrote.
func render(t *testing.T, utf8 bool, f func(e *Encoder)) string {
	t.Helper()
	out, err := renderErr(utf8, f)
	if err != nil {
		t.Fatalf("encoder error: %v", err)
	}
	return out
}

func renderErr(utf8 bool, f func(e *Encoder)) (string, error) {
	var buf bytes.Buffer
	e := NewEncoder(bufio.NewWriter(&buf))
	e.UTF8 = utf8
	f(e)
	err := e.Flush()
	return buf.String(), err
}

type encCase struct {
	name string
	utf8 bool
	f    func(e *Encoder)
	want string
}

func runEncCases(t *testing.T, tests []encCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(t, tt.utf8, tt.f); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestPrimitives(t *testing.T) {
	long1000 := strings.Repeat("x", 1000)
	long1001 := strings.Repeat("x", 1001)
	runEncCases(t, []encCase{
		// RFC 3501 section 4.3 / 9: quoted = DQUOTE *QUOTED-CHAR DQUOTE,
		// QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials.
		{"quoted plain", false, func(e *Encoder) { e.String("hello world") }, `"hello world"`},
		{"quoted empty", false, func(e *Encoder) { e.String("") }, `""`},
		{"quoted escapes DQUOTE and backslash", false, func(e *Encoder) { e.String(`a"b\c`) }, `"a\"b\\c"`},
		{"Quoted escapes", false, func(e *Encoder) { e.Quoted(`\"`) }, `"\\\""`},
		// TEXT-CHAR excludes CR and LF: literal = "{" number "}" CRLF *CHAR8.
		{"CRLF forces literal", false, func(e *Encoder) { e.String("a\r\nb") }, "{4}\r\na\r\nb"},
		{"lone LF forces literal", false, func(e *Encoder) { e.String("a\nb") }, "{3}\r\na\nb"},
		{"NUL forces literal", false, func(e *Encoder) { e.String("a\x00") }, "{2}\r\na\x00"},
		// RFC 3501: CHAR is 7-bit; RFC 6855 / RFC 9051: QUOTED-CHAR =/ UTF8-2 / UTF8-3 / UTF8-4.
		{"8-bit without UTF8 is a literal", false, func(e *Encoder) { e.String("café") }, "{5}\r\ncafé"},
		{"UTF-8 with UTF8 is quoted", true, func(e *Encoder) { e.String("café") }, `"café"`},
		{"invalid UTF-8 with UTF8 is a literal", true, func(e *Encoder) { e.String("a\xff") }, "{2}\r\na\xff"},
		{"1000 bytes quoted", false, func(e *Encoder) { e.String(long1000) }, `"` + long1000 + `"`},
		{"1001 bytes literal", false, func(e *Encoder) { e.String(long1001) }, "{1001}\r\n" + long1001},
		// nil = "NIL"; nstring = string / nil.
		{"NIL", false, func(e *Encoder) { e.NIL() }, "NIL"},
		{"NString nil", false, func(e *Encoder) { e.NString("x", true) }, "NIL"},
		{"NString value", false, func(e *Encoder) { e.NString("", false) }, `""`},
		{"NStringPtr nil", false, func(e *Encoder) { e.NStringPtr(nil) }, "NIL"},
		{"NStringPtr value", false, func(e *Encoder) { e.NStringPtr(ptr("v")) }, `"v"`},
		{"numbers", false, func(e *Encoder) { e.Number(0).SP().Number(4294967295).SP().Number64(18446744073709551615) },
			"0 4294967295 18446744073709551615"},
		{"atom special CRLF", false, func(e *Encoder) { e.Atom("A").Special('(').Special(')').CRLF() }, "A()\r\n"},
		{"List", false, func(e *Encoder) { e.List(3, func(i int) { e.Number(uint32(i)) }) }, "(0 1 2)"},
		{"empty List", false, func(e *Encoder) { e.List(0, nil) }, "()"},
		// RFC 3501 section 2.3.2 flags; flag-list = "(" [flag *(SP flag)] ")".
		{"flags", false, func(e *Encoder) { e.Flags([]imap.Flag{imap.FlagSeen, imap.FlagDeleted, "$Forwarded"}) },
			`(\Seen \Deleted $Forwarded)`},
		{"no flags", false, func(e *Encoder) { e.Flags(nil) }, "()"},
		{"flag", false, func(e *Encoder) { e.Flag(imap.FlagWildcard) }, `\*`},
	})
}

func TestDateTime(t *testing.T) {
	// RFC 3501 section 9: date-time = DQUOTE date-day-fixed "-" date-month
	// "-" date-year SP time SP zone DQUOTE; date-day-fixed = (SP DIGIT) / 2DIGIT.
	pdt := time.FixedZone("PDT", -7*3600)
	runEncCases(t, []encCase{
		{"two-digit day, negative zone (RFC 3501 section 8)", false,
			func(e *Encoder) { e.DateTime(time.Date(1996, 7, 17, 2, 44, 25, 0, pdt)) },
			`"17-Jul-1996 02:44:25 -0700"`},
		{"one-digit day is space padded", false,
			func(e *Encoder) { e.DateTime(time.Date(2003, 7, 1, 10, 52, 37, 0, time.FixedZone("", 2*3600))) },
			`" 1-Jul-2003 10:52:37 +0200"`},
		{"UTC", false,
			func(e *Encoder) { e.DateTime(time.Date(2026, 12, 9, 23, 5, 0, 0, time.UTC)) },
			`" 9-Dec-2026 23:05:00 +0000"`},
		{"half-hour zone", false,
			func(e *Encoder) { e.DateTime(time.Date(2020, 2, 29, 0, 0, 1, 0, time.FixedZone("", 5*3600+1800))) },
			`"29-Feb-2020 00:00:01 +0530"`},
	})
}

func TestMailbox(t *testing.T) {
	runEncCases(t, []encCase{
		// RFC 3501 section 5.1: INBOX is case-insensitive.
		{"inbox any case", false, func(e *Encoder) { e.Mailbox("inbox") }, `INBOX`}, // mailbox = "INBOX" / astring (RFC 9051 section 9)
		{"INBOX children keep their case", false, func(e *Encoder) { e.Mailbox("Inbox/Sub") }, `"Inbox/Sub"`},
		// RFC 3501 section 5.1.3.
		{"modified UTF-7", false, func(e *Encoder) { e.Mailbox("~peter/mail/台北/日本語") }, `"~peter/mail/&U,BTFw-/&ZeVnLIqe-"`},
		{"ampersand", false, func(e *Encoder) { e.Mailbox("A&B") }, `"A&-B"`},
		// RFC 6855 section 3 / RFC 9051: UTF-8 mailbox names.
		{"UTF-8 when UTF8", true, func(e *Encoder) { e.Mailbox("台北") }, `"台北"`},
		{"ampersand stays with UTF8", true, func(e *Encoder) { e.Mailbox("A&B") }, `"A&B"`},
		{"quote in name", false, func(e *Encoder) { e.Mailbox(`a"b`) }, `"a\"b"`},
	})
}

func TestNumSet(t *testing.T) {
	// RFC 9051 section 9: sequence-set = (seq-number / seq-range) ["," sequence-set].
	runEncCases(t, []encCase{
		{"ranges", false, func(e *Encoder) {
			e.NumSet(imap.SeqSet{{Start: 1, Stop: 3}, {Start: 5, Stop: 5}, {Start: 7, Stop: 0}})
		}, "1:3,5,7:*"},
		{"star", false, func(e *Encoder) { e.NumSet(imap.SeqSet{{Start: 0, Stop: 0}}) }, "*"},
		{"uids", false, func(e *Encoder) { e.NumSet(imap.UIDSetNum(304, 319, 320)) }, "304,319:320"},
	})
	if _, err := renderErr(false, func(e *Encoder) { e.NumSet(imap.UIDSet{}) }); err == nil {
		t.Error("empty set: want an error")
	}
}

func TestLiteral(t *testing.T) {
	// RFC 3501 section 4.3 literal; RFC 3516 section 4.2 literal8 = "~{" number "}" CRLF *OCTET.
	got := render(t, false, func(e *Encoder) {
		w := e.Literal(5, false)
		w.Write([]byte("he"))
		w.Write([]byte("llo"))
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		e.SP()
		w = e.Literal(3, true)
		w.Write([]byte("a\x00b"))
		w.Close()
	})
	if want := "{5}\r\nhello ~{3}\r\na\x00b"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	_, err := renderErr(false, func(e *Encoder) {
		w := e.Literal(5, false)
		w.Write([]byte("abc"))
		if err := w.Close(); !errors.Is(err, ErrLiteralSize) {
			t.Errorf("short literal: Close = %v, want ErrLiteralSize", err)
		}
	})
	if !errors.Is(err, ErrLiteralSize) {
		t.Errorf("short literal: sticky error = %v", err)
	}

	_, err = renderErr(false, func(e *Encoder) {
		w := e.Literal(2, false)
		if _, err := w.Write([]byte("abc")); !errors.Is(err, ErrLiteralSize) {
			t.Errorf("long literal: Write = %v, want ErrLiteralSize", err)
		}
		w.Close()
	})
	if !errors.Is(err, ErrLiteralSize) {
		t.Errorf("long literal: sticky error = %v", err)
	}

	_, err = renderErr(false, func(e *Encoder) {
		e.Literal(2, false)
		e.Atom("X") // inside the unfinished literal
	})
	if err == nil {
		t.Error("write inside an unfinished literal: want an error")
	}
}

func TestStickyError(t *testing.T) {
	got, err := renderErr(false, func(e *Encoder) {
		e.Atom("A")
		e.NumSet(nil)
		e.Atom("B")
		if e.Err() == nil {
			t.Error("Err() = nil")
		}
	})
	if err == nil || got != "" {
		t.Errorf("got %q, %v; want nothing flushed and an error", got, err)
	}
}

func TestResponses(t *testing.T) {
	runEncCases(t, []encCase{
		// RFC 3501 section 7.1: resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text;
		// resp-text = ["[" resp-text-code "]" SP] text.
		{"tagged OK with code and argument", false, func(e *Encoder) {
			e.StatusResponse("a1", imap.StatusResponseTypeOK, "UIDVALIDITY", func() { e.SP().Number(3857529045) }, "UIDs valid")
		}, "a1 OK [UIDVALIDITY 3857529045] UIDs valid\r\n"},
		{"code without argument", false, func(e *Encoder) {
			e.StatusResponse("A142", imap.StatusResponseTypeOK, "READ-WRITE", nil, "SELECT completed")
		}, "A142 OK [READ-WRITE] SELECT completed\r\n"},
		{"NO with TRYCREATE", false, func(e *Encoder) {
			e.StatusResponse("A003", imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate, nil, "Mailbox doesn't exist")
		}, "A003 NO [TRYCREATE] Mailbox doesn't exist\r\n"},
		// RFC 4315 section 3: COPYUID uid-validity SP uid-set SP uid-set.
		{"COPYUID", false, func(e *Encoder) {
			e.StatusResponse("A003", imap.StatusResponseTypeOK, "COPYUID", func() {
				e.SP().Number(38505).SP().NumSet(imap.UIDSetNum(304, 319, 320)).SP().NumSet(imap.UIDSetNum(3956, 3957, 3958))
			}, "Done")
		}, "A003 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"},
		{"untagged, default text", false, func(e *Encoder) {
			e.StatusResponse("*", imap.StatusResponseTypeOK, "", nil, "")
		}, "* OK Completed\r\n"},
		{"BYE default", false, func(e *Encoder) {
			e.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "")
		}, "* BYE Logging out\r\n"},
		{"text with CRLF is sanitized", false, func(e *Encoder) {
			e.StatusResponse("a", imap.StatusResponseTypeBad, "", nil, "x\r\na OK y")
		}, "a BAD x  a OK y\r\n"},
		// RFC 3501 section 7.2.1.
		{"CAPABILITY", false, func(e *Encoder) {
			e.Capability([]imap.Cap{"IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"})
		}, "* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"},
		{"CAPABILITY response code", false, func(e *Encoder) {
			e.StatusResponse("*", imap.StatusResponseTypeOK, "CAPABILITY", func() { e.SP().Caps([]imap.Cap{"IMAP4rev1", "IDLE"}) }, "ready")
		}, "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"},
		// RFC 3501 section 7.2.6.
		{"FLAGS", false, func(e *Encoder) {
			e.FlagsResponse([]imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft})
		}, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"},
		// RFC 3501 section 6.3.1 example.
		{"PERMANENTFLAGS", false, func(e *Encoder) {
			e.PermanentFlags([]imap.Flag{imap.FlagDeleted, imap.FlagSeen, imap.FlagWildcard}, "Limited")
		}, "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"},
		{"PERMANENTFLAGS default text", false, func(e *Encoder) { e.PermanentFlags(nil, "") },
			"* OK [PERMANENTFLAGS ()] Flags permitted\r\n"},
		// RFC 3501 section 7.2.4 (the mailbox is sent quoted).
		{"STATUS", false, func(e *Encoder) {
			e.StatusData(&imap.StatusData{Mailbox: "blurdybloop", NumMessages: ptr(uint32(231)), UIDNext: 44292})
		}, "* STATUS \"blurdybloop\" (MESSAGES 231 UIDNEXT 44292)\r\n"},
		{"STATUS all items", false, func(e *Encoder) {
			e.StatusData(&imap.StatusData{
				Mailbox: "INBOX", NumMessages: ptr(uint32(3)), UIDNext: 10, UIDValidity: 7, NumUnseen: ptr(uint32(1)),
				NumDeleted: ptr(uint32(0)), Size: ptr(int64(12345)), NumRecent: ptr(uint32(0)),
				HighestModSeq: 99, AppendLimit: ptr(uint32(1 << 20)),
			})
		}, "* STATUS INBOX (MESSAGES 3 UIDNEXT 10 UIDVALIDITY 7 UNSEEN 1 DELETED 0 SIZE 12345 RECENT 0 HIGHESTMODSEQ 99 APPENDLIMIT 1048576)\r\n"},
		// RFC 7889 section 5: APPENDLIMIT NIL in STATUS.
		{"STATUS APPENDLIMIT NIL", false, func(e *Encoder) {
			e.StatusDataWithOptions(&imap.StatusData{Mailbox: "Drafts", NumMessages: ptr(uint32(0))}, &imap.StatusOptions{NumMessages: true, AppendLimit: true})
		}, "* STATUS \"Drafts\" (MESSAGES 0 APPENDLIMIT NIL)\r\n"},
		{"STATUS mUTF-7 name", false, func(e *Encoder) {
			e.StatusData(&imap.StatusData{Mailbox: "台北", UIDNext: 1})
		}, "* STATUS \"&U,BTFw-\" (UIDNEXT 1)\r\n"},
		// RFC 3501 section 7.2.5.
		{"SEARCH", false, func(e *Encoder) { e.Search([]uint32{2, 3, 6}, 0) }, "* SEARCH 2 3 6\r\n"},
		{"SEARCH empty", false, func(e *Encoder) { e.Search(nil, 5) }, "* SEARCH\r\n"},
		// RFC 7162 section 3.1.5.
		{"SEARCH MODSEQ", false, func(e *Encoder) {
			e.Search([]uint32{2, 5, 6, 7, 11, 12, 18, 19, 20, 23}, 917162500)
		}, "* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n"},
		// RFC 4731 section 3.1 / RFC 9051 section 7.3.4.
		{"ESEARCH all options", false, func(e *Encoder) {
			e.ESearchWithOptions("a1", true, &imap.SearchData{Min: 1, Max: 5, Count: 4, All: imap.UIDSetNum(1, 2, 3, 5)},
				&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnAll: true})
		}, "* ESEARCH (TAG \"a1\") UID MIN 1 MAX 5 COUNT 4 ALL 1:3,5\r\n"},
		{"ESEARCH MIN COUNT", false, func(e *Encoder) {
			e.ESearchWithOptions("A282", false, &imap.SearchData{Min: 2, Max: 9, Count: 3, All: imap.SeqSetNum(2, 4, 9)},
				&imap.SearchOptions{ReturnMin: true, ReturnCount: true})
		}, "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"},
		{"ESEARCH no match: COUNT 0 only", false, func(e *Encoder) {
			e.ESearchWithOptions("A283", false, &imap.SearchData{},
				&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnAll: true})
		}, "* ESEARCH (TAG \"A283\") COUNT 0\r\n"},
		{"ESEARCH no match, no COUNT", false, func(e *Encoder) {
			e.ESearchWithOptions("A284", true, &imap.SearchData{}, &imap.SearchOptions{ReturnAll: true})
		}, "* ESEARCH (TAG \"A284\") UID\r\n"},
		{"ESEARCH without options: COUNT 0 omitted", false, func(e *Encoder) {
			e.ESearch("u", true, &imap.SearchData{})
		}, "* ESEARCH (TAG \"u\") UID\r\n"},
		{"ESEARCH without options, MODSEQ", false, func(e *Encoder) {
			e.ESearch("t", false, &imap.SearchData{All: imap.SeqSetNum(1), ModSeq: 7})
		}, "* ESEARCH (TAG \"t\") ALL 1 MODSEQ 7\r\n"},
		// RFC 2342 section 5 examples.
		{"NAMESPACE personal only", false, func(e *Encoder) {
			e.Namespace(&imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}})
		}, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"},
		{"NAMESPACE all three", false, func(e *Encoder) {
			e.Namespace(&imap.NamespaceData{
				Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}},
				Other:    []imap.NamespaceDescriptor{{Prefix: "~", Delim: '/'}},
				Shared:   []imap.NamespaceDescriptor{{Prefix: "#shared/", Delim: '/'}, {Prefix: "#public/", Delim: '/'}},
			})
		}, "* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) ((\"#shared/\" \"/\")(\"#public/\" \"/\"))\r\n"},
		{"NAMESPACE no delimiter", false, func(e *Encoder) {
			e.Namespace(&imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX."}}})
		}, "* NAMESPACE ((\"INBOX.\" NIL)) NIL NIL\r\n"},
		// RFC 5161 section 3.2.
		{"ENABLED", false, func(e *Encoder) { e.Enabled([]imap.Cap{"CONDSTORE", "QRESYNC"}) }, "* ENABLED CONDSTORE QRESYNC\r\n"},
		{"ENABLED none", false, func(e *Encoder) { e.Enabled(nil) }, "* ENABLED\r\n"},
		// RFC 2971 section 3.1: id-params-list = "(" *(string SP nstring) ")" / nil.
		{"ID", false, func(e *Encoder) {
			e.ID(map[string]string{"version": "1.0", "name": "Mailfleet", "vendor": "Mailfleet project"})
		}, "* ID (\"name\" \"Mailfleet\" \"vendor\" \"Mailfleet project\" \"version\" \"1.0\")\r\n"},
		{"ID NIL", false, func(e *Encoder) { e.ID(nil) }, "* ID NIL\r\n"},
		// RFC 9051 section 7.5: continue-req = "+" SP (resp-text / base64) CRLF.
		{"continuation", false, func(e *Encoder) { e.Continuation("idling") }, "+ idling\r\n"},
		{"continuation default text", false, func(e *Encoder) { e.Continuation("") }, "+ Ready\r\n"},
		{"continuation base64", false, func(e *Encoder) { e.ContinuationBase64([]byte("abc")) }, "+ YWJj\r\n"},
		{"continuation empty challenge", false, func(e *Encoder) { e.ContinuationBase64(nil) }, "+ \r\n"},
		// RFC 3501 sections 7.3.1, 7.3.2, 7.4.1.
		{"EXISTS", false, func(e *Encoder) { e.Exists(23) }, "* 23 EXISTS\r\n"},
		{"RECENT", false, func(e *Encoder) { e.Recent(5) }, "* 5 RECENT\r\n"},
		{"EXPUNGE", false, func(e *Encoder) { e.Expunge(8) }, "* 8 EXPUNGE\r\n"},
		// RFC 7162 section 3.2.10.
		{"VANISHED EARLIER", false, func(e *Encoder) {
			e.Vanished(true, imap.UIDSet{{Start: 41, Stop: 41}, {Start: 43, Stop: 116}, {Start: 118, Stop: 118}, {Start: 120, Stop: 211}, {Start: 214, Stop: 540}})
		}, "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"},
		{"VANISHED", false, func(e *Encoder) { e.Vanished(false, imap.UIDSetNum(405, 407, 410, 425)) },
			"* VANISHED 405,407,410,425\r\n"},
	})
}

func TestListResponse(t *testing.T) {
	runEncCases(t, []encCase{
		// RFC 3501 section 7.2.2 (the name is sent quoted).
		{"LIST", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/', Mailbox: "~/Mail/foo"}, false)
		}, "* LIST (\\Noselect) \"/\" \"~/Mail/foo\"\r\n"},
		{"LIST no attributes, no delimiter", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Mailbox: "inbox"}, false)
		}, "* LIST () NIL INBOX\r\n"},
		{"LIST backslash delimiter", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Delim: '\\', Mailbox: "a"}, false)
		}, "* LIST () \"\\\\\" \"a\"\r\n"},
		{"LIST modified UTF-7", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}, Delim: '/', Mailbox: "日本語"}, false)
		}, "* LIST (\\HasNoChildren) \"/\" \"&ZeVnLIqe-\"\r\n"},
		{"LIST UTF-8", true, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Delim: '/', Mailbox: "日本語"}, false)
		}, "* LIST () \"/\" \"日本語\"\r\n"},
		// RFC 5258 section 5 example.
		{"CHILDINFO", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Delim: '/', Mailbox: "Foo", ChildInfo: &imap.ListDataChildInfo{Subscribed: true}}, false)
		}, "* LIST () \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"},
		// RFC 9051 section 6.3.9 example.
		{"OLDNAME", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Delim: '/', Mailbox: "NewMailbox", OldName: "OldMailbox"}, false)
		}, "* LIST () \"/\" \"NewMailbox\" (\"OLDNAME\" (\"OldMailbox\"))\r\n"},
		{"CHILDINFO and OLDNAME", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrSubscribed}, Delim: '.', Mailbox: "B",
				ChildInfo: &imap.ListDataChildInfo{Subscribed: true}, OldName: "A"}, false)
		}, "* LIST (\\Subscribed) \".\" \"B\" (\"CHILDINFO\" (\"SUBSCRIBED\") \"OLDNAME\" (\"A\"))\r\n"},
		// RFC 3501 section 7.2.3.
		{"LSUB", false, func(e *Encoder) {
			e.ListResponse(&imap.ListData{Delim: '.', Mailbox: "#news.comp.mail.misc", OldName: "ignored"}, true)
		}, "* LSUB () \".\" \"#news.comp.mail.misc\"\r\n"},
	})
}

// RFC 3501 section 8, FETCH of message 12: the ENVELOPE.
var rfc3501Envelope = &Envelope{
	Date:      "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
	Subject:   "IMAP4rev1 WG mtg summary and minutes",
	From:      []imap.Address{{Name: "Terry Gray", Mailbox: "gray", Host: "cac.washington.edu"}},
	Sender:    []imap.Address{{Name: "Terry Gray", Mailbox: "gray", Host: "cac.washington.edu"}},
	ReplyTo:   []imap.Address{{Name: "Terry Gray", Mailbox: "gray", Host: "cac.washington.edu"}},
	To:        []imap.Address{{Mailbox: "imap", Host: "cac.washington.edu"}},
	Cc:        []imap.Address{{Mailbox: "minutes", Host: "CNRI.Reston.VA.US"}, {Name: "John Klensin", Mailbox: "KLENSIN", Host: "MIT.EDU"}},
	MessageID: "<B27397-0100000@cac.washington.edu>",
}

const rfc3501EnvelopeText = `("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" ` +
	`(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ` +
	`(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ` +
	`((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL ` +
	`"<B27397-0100000@cac.washington.edu>")`

func TestEnvelope(t *testing.T) {
	runEncCases(t, []encCase{
		{"RFC 3501 section 8 example", false, func(e *Encoder) { e.Envelope(rfc3501Envelope) }, rfc3501EnvelopeText},
		// RFC 3501 section 7.4.2: every field NIL.
		{"empty envelope", false, func(e *Encoder) { e.Envelope(&Envelope{}) },
			"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{"nil envelope", false, func(e *Encoder) { e.Envelope(nil) }, "NIL"},
		// The Date header is sent verbatim, not reformatted.
		{"raw date and ids kept", false, func(e *Encoder) {
			e.Envelope(&Envelope{Date: "Tue, 1 Jul 2003 10:52:37 +0200", InReplyTo: "<a@b> <c@d>", MessageID: "<x@y>"})
		}, `("Tue, 1 Jul 2003 10:52:37 +0200" NIL NIL NIL NIL NIL NIL NIL "<a@b> <c@d>" "<x@y>")`},
		// RFC 3501 section 7.4.2: group syntax, start (NIL NIL "name" NIL), end (NIL NIL NIL NIL).
		{"groups", false, func(e *Encoder) {
			e.Envelope(&Envelope{
				To: []imap.Address{
					{Mailbox: "A Group"},
					{Name: "Ed Jones", Mailbox: "c", Host: "a.test"},
					{Mailbox: "joe", Host: "where.test"},
					{},
				},
				Bcc: []imap.Address{{Mailbox: "undisclosed-recipients"}, {}},
			})
		}, `(NIL NIL NIL NIL NIL ((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")(NIL NIL NIL NIL)) NIL ` +
			`((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL)`},
		{"8-bit subject without UTF8 is a literal", false, func(e *Encoder) {
			e.Envelope(&Envelope{Subject: "Grüße"})
		}, "(NIL {7}\r\nGrüße NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{"8-bit name with UTF8 is quoted", true, func(e *Encoder) {
			e.Envelope(&Envelope{From: []imap.Address{{Name: "José", Mailbox: "jose", Host: "example.org"}}})
		}, `(NIL NIL (("José" NIL "jose" "example.org")) NIL NIL NIL NIL NIL NIL NIL)`},
		{"quotes in subject", false, func(e *Encoder) {
			e.Envelope(&Envelope{Subject: `Re: "hi" \o/`})
		}, `(NIL "Re: \"hi\" \\o/" NIL NIL NIL NIL NIL NIL NIL NIL)`},
	})
}

func textPart(sub string, size uint32, lines int64, params map[string]string) *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{
		Type: "TEXT", Subtype: sub, Params: params, Encoding: "7BIT", Size: size,
		Text: &imap.BodyStructureText{NumLines: lines},
	}
}

// RFC 3501 section 7.4.2: "a two part message consisting of a text and a
// BASE64-encoded text attachment can have a body structure of: ..."
var rfc3501Multipart = &imap.BodyStructureMultiPart{
	Children: []imap.BodyStructure{
		textPart("PLAIN", 1152, 23, map[string]string{"CHARSET": "US-ASCII"}),
		&imap.BodyStructureSinglePart{
			Type: "TEXT", Subtype: "PLAIN", Params: map[string]string{"CHARSET": "US-ASCII", "NAME": "cc.diff"},
			ID: "<960723163407.20117h@cac.washington.edu>", Description: "Compiler diff",
			Encoding: "BASE64", Size: 4554, Text: &imap.BodyStructureText{NumLines: 73},
		},
	},
	Subtype: "MIXED",
}

const rfc3501MultipartText = `(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)` +
	`("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73)` +
	` "MIXED")`

func TestBodyStructure(t *testing.T) {
	plain := textPart("PLAIN", 3028, 92, map[string]string{"CHARSET": "US-ASCII"})

	attachment := &imap.BodyStructureSinglePart{
		Type: "application", Subtype: "pdf", Params: map[string]string{"name": "r.pdf"},
		Encoding: "base64", Size: 4096,
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: &imap.BodyStructureDisposition{Value: "attachment", Params: map[string]string{"filename": "r.pdf", "size": "3000"}},
			Language:    []string{"en"},
			Location:    "http://example.org/r.pdf",
		},
	}
	body := &imap.BodyStructureSinglePart{
		Type: "text", Subtype: "plain", Params: map[string]string{"charset": "utf-8", "format": "flowed"},
		Encoding: "quoted-printable", Size: 120, Text: &imap.BodyStructureText{NumLines: 4},
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: &imap.BodyStructureDisposition{Value: "inline"},
			Language:    []string{"en", "de"},
		},
	}
	mixed := &imap.BodyStructureMultiPart{
		Children: []imap.BodyStructure{body, attachment},
		Subtype:  "mixed",
		Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{"boundary": "b1"}},
	}

	alt := &imap.BodyStructureMultiPart{
		Children: []imap.BodyStructure{
			textPart("plain", 10, 1, map[string]string{"charset": "us-ascii"}),
			textPart("html", 20, 2, map[string]string{"charset": "us-ascii"}),
		},
		Subtype:  "alternative",
		Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{"boundary": "b2"}},
	}
	nested := &imap.BodyStructureMultiPart{
		Children: []imap.BodyStructure{alt, attachment},
		Subtype:  "mixed",
		Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{"boundary": "b1"}},
	}

	rfc822 := &imap.BodyStructureSinglePart{
		Type: "message", Subtype: "rfc822", Encoding: "7bit", Size: 500,
		MessageRFC822: &imap.BodyStructureMessageRFC822{
			Envelope: &imap.Envelope{
				Date:      time.Date(2003, 7, 1, 10, 52, 37, 0, time.FixedZone("", 2*3600)),
				Subject:   "fwd",
				From:      []imap.Address{{Mailbox: "a", Host: "b.example"}},
				InReplyTo: []string{"p@q"},
				MessageID: "m@n",
			},
			BodyStructure: textPart("plain", 30, 2, nil),
			NumLines:      12,
		},
	}
	const rfc822Env = `("Tue, 01 Jul 2003 10:52:37 +0200" "fwd" ((NIL NIL "a" "b.example")) NIL NIL NIL NIL NIL "<p@q>" "<m@n>")`

	runEncCases(t, []encCase{
		// RFC 3501 section 7.4.2 BODYSTRUCTURE: body-type-text = media-text SP body-fields SP body-fld-lines.
		{"text part, BODY", false, func(e *Encoder) { e.BodyStructure(plain, false) },
			`("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)`},
		// body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]].
		{"text part, BODYSTRUCTURE without extension data: NIL fields", false, func(e *Encoder) { e.BodyStructure(plain, true) },
			`("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)`},
		// The section 7.4.2 example carries no extension data, so it is the BODY form.
		{"RFC 3501 section 7.4.2 multipart example", false, func(e *Encoder) { e.BodyStructure(rfc3501Multipart, false) },
			rfc3501MultipartText},
		// body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]].
		{"RFC 3501 example as BODYSTRUCTURE", false, func(e *Encoder) { e.BodyStructure(rfc3501Multipart, true) },
			`(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)` +
				`("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL)` +
				` "MIXED" NIL NIL NIL NIL)`},
		{"mixed with attachment, BODY", false, func(e *Encoder) { e.BodyStructure(mixed, false) },
			`(("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "quoted-printable" 120 4)` +
				`("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4096) "mixed")`},
		// body-fld-dsp = "(" string SP body-fld-param ")" / nil;
		// body-fld-lang = nstring / "(" string *(SP string) ")".
		{"mixed with attachment, BODYSTRUCTURE", false, func(e *Encoder) { e.BodyStructure(mixed, true) },
			`(("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "quoted-printable" 120 4 NIL ("inline" NIL) ("en" "de") NIL)` +
				`("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4096 NIL ("attachment" ("filename" "r.pdf" "size" "3000")) "en" "http://example.org/r.pdf")` +
				` "mixed" ("boundary" "b1") NIL NIL NIL)`},
		{"alternative nested in mixed, BODY", false, func(e *Encoder) { e.BodyStructure(nested, false) },
			`((("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 1)("TEXT" "html" ("charset" "us-ascii") NIL NIL "7BIT" 20 2) "alternative")` +
				`("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4096) "mixed")`},
		{"alternative nested in mixed, BODYSTRUCTURE", false, func(e *Encoder) { e.BodyStructure(nested, true) },
			`((("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)("TEXT" "html" ("charset" "us-ascii") NIL NIL "7BIT" 20 2 NIL NIL NIL NIL) "alternative" ("boundary" "b2") NIL NIL NIL)` +
				`("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 4096 NIL ("attachment" ("filename" "r.pdf" "size" "3000")) "en" "http://example.org/r.pdf")` +
				` "mixed" ("boundary" "b1") NIL NIL NIL)`},
		// body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines.
		{"message/rfc822, BODY", false, func(e *Encoder) { e.BodyStructure(rfc822, false) },
			`("message" "rfc822" NIL NIL NIL "7bit" 500 ` + rfc822Env + ` ("TEXT" "plain" NIL NIL NIL "7BIT" 30 2) 12)`},
		{"message/rfc822, BODYSTRUCTURE", false, func(e *Encoder) { e.BodyStructure(rfc822, true) },
			`("message" "rfc822" NIL NIL NIL "7bit" 500 ` + rfc822Env + ` ("TEXT" "plain" NIL NIL NIL "7BIT" 30 2 NIL NIL NIL NIL) 12 NIL NIL NIL NIL)`},
		{"message/rfc822 without its data", false, func(e *Encoder) {
			e.BodyStructure(&imap.BodyStructureSinglePart{Type: "MESSAGE", Subtype: "RFC822", Encoding: "7BIT", Size: 3}, false)
		}, `("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 3 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) 0)`},
		{"MessageRFC822 ignored on other message types", false, func(e *Encoder) {
			e.BodyStructure(&imap.BodyStructureSinglePart{Type: "message", Subtype: "delivery-status", Encoding: "7bit", Size: 9,
				MessageRFC822: rfc822.MessageRFC822}, false)
		}, `("message" "delivery-status" NIL NIL NIL "7bit" 9)`},
		// body-type-mpart = 1*body SP media-subtype: an empty multipart gets one empty text/plain child.
		{"empty multipart", false, func(e *Encoder) { e.BodyStructure(&imap.BodyStructureMultiPart{Subtype: "mixed"}, true) },
			`(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL)`},
		{"defaults for empty fields", false, func(e *Encoder) { e.BodyStructure(&imap.BodyStructureSinglePart{}, false) },
			`("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)`},
		{"8-bit parameter without UTF8 is a literal", false, func(e *Encoder) {
			e.BodyStructure(&imap.BodyStructureSinglePart{Type: "application", Subtype: "x", Params: map[string]string{"name": "é"}, Encoding: "base64"}, false)
		}, "(\"application\" \"x\" (\"name\" {2}\r\né) NIL NIL \"base64\" 0)"},
	})
}
