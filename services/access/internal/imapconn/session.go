package imapconn

import (
	"errors"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
)

// Session is the backend of one connection: what the commands do. The
// connection parses, checks the state, calls the session and writes the
// responses; the session never writes to the connection except through
// the writers it is given.
type Session interface {
	// Close releases the session (the connection ended).
	Close() error

	// Not authenticated.
	Login(username, password string) error
	AuthenticateMechanisms() []string
	Authenticate(mech string) (sasl.Server, error)

	// Authenticated.
	Unauthenticate() error
	Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error)
	Create(mailbox string, options *imap.CreateOptions) error
	Delete(mailbox string) error
	Rename(mailbox, newName string, options *imap.RenameOptions) error
	Subscribe(mailbox string) error
	Unsubscribe(mailbox string) error
	List(w *ListWriter, ref string, patterns []string, options *imap.ListOptions) error
	Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error)
	// BeginAppend starts an APPEND of one or more messages (RFC 3502
	// MULTIAPPEND): they are added in turn and committed together, or none.
	BeginAppend(mailbox string) (AppendTx, error)
	AppendLimit() uint32
	Namespace() (*imap.NamespaceData, error)
	// Quota returns the account's quota root's resources that have a
	// limit (none: no quota).
	Quota() ([]QuotaResource, error)
	Poll(w *UpdateWriter, allowExpunge bool) error
	// Idle starts IDLE (RFC 2177): it writes the pending updates and
	// arranges for wake to be called (from any goroutine, without
	// blocking) whenever more may be pending; the connection then calls
	// update from a goroutine of its own, never two at once. stop ends
	// IDLE and writes what is left. No goroutine waits while the client
	// idles: an idle session costs its connection's goroutine only.
	Idle(w *UpdateWriter, wake func()) (update, stop func() error, err error)

	// Selected.
	Unselect() error
	Expunge(w *ExpungeWriter, uids *imap.UIDSet) error
	Search(kind NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error)
	Fetch(w *FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error
	Store(w *FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error
	Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error)
	Move(w *MoveWriter, numSet imap.NumSet, dest string) error
}

// AppendTx is an APPEND in progress. Each message streams through Add as
// the client sends it (nothing holds a whole message); Commit appends all
// of them at once, Abort (also after Commit: then a no-op) none.
type AppendTx interface {
	Add(r imap.LiteralReader, options *imap.AppendOptions) error
	Commit() (*AppendResult, error)
	Abort()
}

// AppendResult is what APPENDUID reports (RFC 4315): the UIDs of the
// messages, in the command's order.
type AppendResult struct {
	UIDValidity uint32
	UIDs        imap.UIDSet
}

// NumKind says whether a command addresses messages by sequence number or
// by UID.
type NumKind int

const (
	NumKindSeq NumKind = iota
	NumKindUID
)

// ErrAuthFailed is what Login and SASL answer for wrong credentials.
var ErrAuthFailed = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed"}

// literalReader is an APPEND message literal as the session reads it.
type literalReader struct {
	*limitedBody
	size int64
}

func (r literalReader) Size() int64 { return r.size }

var _ imap.LiteralReader = literalReader{}
var _ io.Reader = literalReader{}

// errConnClosed ends the command loop without a response.
var errConnClosed = errors.New("imapconn: connection closed")
