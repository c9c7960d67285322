// Package mailmove moves mailboxes in and out of Mailfleet: it reads and
// writes Maildir trees (Dovecot's Maildir++ layout) and mbox files, reads
// live IMAP servers, and imports or exports through the storage API.
package mailmove

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"time"
)

// Delimiter is the storage API's hierarchy separator.
const Delimiter = "/"

// Message is one message read from a source.
type Message struct {
	Flags []string  // IMAP system flags and keywords
	Date  time.Time // internal date
	Size  int64     // octets, -1 when not known before reading
	// Body returns the message's bytes.
	Open func() (io.ReadCloser, error)
	// Source names it in errors (a file name, an mbox offset, a UID).
	Source string
	// Key identifies it in its source folder across runs, for --state
	// (Maildir: the file name without its flags); "" when there is none.
	Key string
}

// bytesMessage is a Message whose body is in memory.
func bytesMessage(body []byte, flags []string, date time.Time, src string) Message {
	return Message{Flags: flags, Date: date, Size: int64(len(body)), Source: src,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }}
}

// Folder is one mailbox of a source.
type Folder struct {
	Name       string // with Delimiter between levels; "INBOX" for the inbox
	Subscribed bool
	Messages   []Message
}

// Maildir info letters (the ":2," suffix) and the IMAP flags they stand
// for, as Dovecot maps them (P, passed, is $Forwarded).
var maildirFlags = []struct {
	letter byte
	flag   string
}{
	{'D', `\Draft`}, {'F', `\Flagged`}, {'P', `$Forwarded`}, {'R', `\Answered`}, {'S', `\Seen`}, {'T', `\Deleted`},
}

// cleanFlags drops what the storage tier does not keep (\Recent, which is
// per session) and what it would refuse (keywords that are not IMAP
// atoms), and sorts the rest. Dropped ones are returned for a warning.
func cleanFlags(flags []string) (keep, dropped []string) {
	seen := map[string]bool{}
	for _, f := range flags {
		l := strings.ToLower(f)
		switch {
		case l == `\recent` || seen[l]:
			continue
		case strings.HasPrefix(f, `\`):
			switch l {
			case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`:
			default:
				dropped = append(dropped, f)
				continue
			}
		case !isAtom(f):
			dropped = append(dropped, f)
			continue
		}
		seen[l] = true
		keep = append(keep, f)
	}
	sort.Strings(keep)
	return keep, dropped
}

// isAtom says whether a keyword is an IMAP atom (RFC 9051): no specials,
// controls, spaces or non-ASCII, at most 128 octets.
func isAtom(f string) bool {
	if f == "" || len(f) > 128 {
		return false
	}
	for _, c := range f {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`(){%*"\]`, c) {
			return false
		}
	}
	return true
}

func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// keywordsOf returns the flags that are keywords (not system flags).
func keywordsOf(flags []string) []string {
	var out []string
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			out = append(out, f)
		}
	}
	return out
}
