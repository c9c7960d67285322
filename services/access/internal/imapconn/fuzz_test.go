package imapconn

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseCommand feeds arbitrary bytes to the command parser, as the
// connection loop does: every command either parses or fails with a client
// error or an I/O error (end of input), never a panic, and never reads a
// non-synchronizing literal it refused as commands. Run long with:
//
//	go test -run '^$' -fuzz FuzzParseCommand -fuzztime 10m ./services/access/internal/imapconn
func FuzzParseCommand(f *testing.F) {
	for _, seed := range []string{
		"a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (FROM TO)]<0.100> BINARY[3]<5.7> BINARY.SIZE[1])\r\n",
		"a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET UTF-8 OR (FROM \"x\" SEEN) NOT KEYWORD $J 1:5 UID 7:* ON 1-Feb-2024\r\n",
		"a STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen $x)\r\n",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"*\") RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
		"a APPEND INBOX (\\Seen) \"05-Mar-2024 10:00:00 +0100\" {5+}\r\nhello\r\n",
		"a APPEND INBOX UTF8 (~{3+}\r\nabc)\r\n", "a CREATE {3+}\r\nx&y (USE (\\Drafts))\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\n", "a AUTHENTICATE PLAIN AGFAYg==\r\n", "a ENABLE IMAP4rev2 UTF8=ACCEPT\r\n",
		"a SELECT INBOX (CONDSTORE)\r\na STATUS x (MESSAGES UIDNEXT)\r\n", "\"\x00{99999999999}\r\n",
		"a UID SORT RETURN (MIN ALL) (REVERSE DATE SUBJECT DISPLAYFROM) UTF-8 UNSEEN 1:*\r\n",
		"a THREAD REFERENCES US-ASCII OR FROM {1+}\r\nx SINCE 1-Feb-2024\r\n",
		"B01 UID SEARCH RETURN (UPDATE CONTEXT COUNT PARTIAL 1:500) UNSEEN\r\nB02 CANCELUPDATE \"B01\" \"x\"\r\n",
		"a NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (FROM)]) MessageExpunge)) (SUBTREE (INBOX {3+}\r\nx/y) (MailboxName))\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		d := NewDecoder(bufio.NewReader(strings.NewReader(input)))
		d.MaxLine, d.MaxLiteral = 4096, 4096
		d.Continue = func() error { return nil }
		for i := 0; i < 20; i++ {
			d.Begin()
			err := parseOne(d)
			if err == nil {
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if !IsClientError(err) {
				t.Fatalf("%q: %v is neither a client error nor the end of input", input, err)
			}
			var tb *LiteralTooBigError
			if errors.As(err, &tb) && tb.NonSync || errors.Is(err, ErrLineTooLong) {
				return // the connection ends here
			}
			if derr := d.DiscardCommand(4096); derr != nil {
				return
			}
		}
	})
}

// parseOne parses one command the way the connection dispatches it.
func parseOne(d *Decoder) error {
	for d.AtEOL() {
		if err := d.CRLF(); err != nil {
			return err
		}
	}
	if _, err := d.Tag(); err != nil {
		return err
	}
	if err := d.SP(); err != nil {
		return err
	}
	name, err := d.Atom()
	if err != nil {
		return err
	}
	uid := strings.EqualFold(name, "UID")
	if uid {
		if err := d.SP(); err != nil {
			return err
		}
		if name, err = d.Atom(); err != nil {
			return err
		}
	}
	switch strings.ToUpper(name) {
	case "FETCH":
		_, err = d.ParseFetch(uid)
	case "STORE":
		_, err = d.ParseStore(uid)
	case "SEARCH":
		_, err = d.ParseSearch(uid)
	case "CANCELUPDATE":
		_, err = d.ParseCancelUpdate()
	case "SORT":
		_, err = d.ParseSort(uid)
	case "THREAD":
		_, err = d.ParseThread(uid)
	case "LIST":
		_, err = d.ParseList()
	case "LSUB":
		_, err = d.ParseLSub()
	case "STATUS":
		_, _, err = d.ParseStatus()
	case "SELECT", "EXAMINE":
		_, _, err = d.ParseSelect()
	case "CREATE":
		_, _, err = d.ParseCreate()
	case "RENAME":
		_, _, err = d.ParseRename()
	case "COPY", "MOVE":
		_, _, err = d.ParseCopy(uid)
	case "LOGIN":
		_, _, err = d.ParseLogin()
	case "AUTHENTICATE":
		_, _, _, err = d.ParseAuthenticate()
	case "ENABLE":
		_, err = d.ParseEnable()
	case "NOTIFY":
		_, err = d.ParseNotify()
	case "ID":
		_, err = d.ParseID()
	case "EXPUNGE":
		if uid {
			_, err = d.ParseUIDSet()
		}
	case "APPEND":
		if _, err = d.ParseAppendMailbox(); err != nil {
			return err
		}
		m, err := d.NextAppend(true)
		if err != nil {
			return err
		}
		if err := m.Accept(4096); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, m.Body()); err != nil {
			return err
		}
		if err := m.End(); err != nil {
			return err
		}
	default:
		_, err = d.ParseMailbox()
	}
	if err != nil {
		return err
	}
	return d.CRLF()
}
