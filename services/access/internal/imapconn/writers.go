package imapconn

import (
	"github.com/emersion/go-imap/v2"
)

// The writers sessions answer through. Each belongs to one command of one
// connection and is used by its goroutine only.

// FetchWriter writes the FETCH responses of one command.
type FetchWriter struct {
	c *Conn
	// rfc822 maps a body section to the RFC822* name it was asked by.
	rfc822 map[*imap.FetchItemBodySection]string
	// modified: the messages a STORE UNCHANGEDSINCE left alone (condstore.go).
	modified imap.NumSet
	// conditional: the STORE has UNCHANGEDSINCE (possibly 0).
	conditional bool
	// ext: the FETCH items of extensions.go.
	ext FetchExt
}

// CreateMessage starts the FETCH response of one message; the caller must
// Close it (also on error paths: a response left open breaks the stream,
// and the connection then ends).
func (w *FetchWriter) CreateMessage(seqNum uint32) *FetchResponseWriter {
	rw := w.c.enc.BeginFetch(seqNum)
	rw.RFC822Names = w.rfc822
	return rw
}

// ListWriter writes LIST (or LSUB) responses.
type ListWriter struct {
	c    *Conn
	lsub bool
	// status: LIST-STATUS asked for these items (RFC 5819).
	status *imap.StatusOptions
	// mailboxID: the MAILBOXID of the next mailbox written (RFC 8474
	// in LIST-STATUS), set by SetMailboxID.
	mailboxID string
}

// WriteList writes one mailbox; with LIST-STATUS its STATUS follows.
func (w *ListWriter) WriteList(data *imap.ListData) error {
	e := w.c.enc
	e.ListResponse(data, w.lsub)
	if data.Status != nil && w.status != nil {
		e.StatusDataWithOptions(data.Status, w.status, w.statusExtra()...)
	}
	return e.Err()
}

// ExpungeWriter writes EXPUNGE responses.
type ExpungeWriter struct{ c *Conn }

// WriteExpunge reports a message gone (its current sequence number). The
// zero ExpungeWriter writes nothing (CLOSE expunges silently).
func (w *ExpungeWriter) WriteExpunge(seqNum uint32) error {
	if w.c == nil {
		return nil
	}
	w.c.enc.Expunge(seqNum)
	return w.c.enc.Err()
}

// MoveWriter writes MOVE's responses (RFC 6851 section 3.3): COPYUID in an
// untagged OK, then the expunges.
type MoveWriter struct{ c *Conn }

// WriteCopyData writes the COPYUID response code (nothing when nothing
// moved: RFC 4315 has no COPYUID for an empty set).
func (w *MoveWriter) WriteCopyData(data *imap.CopyData) error {
	if data == nil || data.DestUIDs == nil {
		return nil
	}
	w.c.writeCopyUID("*", data, "Moved")
	return w.c.enc.Err()
}

// WriteExpunge reports a moved message gone from the source.
func (w *MoveWriter) WriteExpunge(seqNum uint32) error {
	w.c.enc.Expunge(seqNum)
	return w.c.enc.Err()
}

// UpdateWriter writes unsolicited updates of the selected mailbox (the
// trackers' UpdateSink). During IDLE each update is flushed at once.
type UpdateWriter struct {
	c     *Conn
	flush bool
	// noFlags drops unsolicited FETCH FLAGS (NOTIFY without FlagChange).
	noFlags bool
}

func (w *UpdateWriter) done() error {
	if w.flush {
		return w.c.flush()
	}
	return w.c.enc.Err()
}

// WriteExpunge reports a message expunged.
func (w *UpdateWriter) WriteExpunge(seqNum uint32) error {
	w.c.enc.Expunge(seqNum)
	return w.done()
}

// WriteNumMessages reports the new message count (EXISTS).
func (w *UpdateWriter) WriteNumMessages(n uint32) error {
	w.c.enc.Exists(n)
	return w.done()
}

// WriteNumRecent reports RECENT (IMAP4rev1 clients only).
func (w *UpdateWriter) WriteNumRecent(n uint32) error {
	if !w.c.rev2() {
		w.c.enc.Recent(n)
	}
	return w.done()
}

// WriteMailboxFlags reports the mailbox's FLAGS (a keyword came into use)
// and PERMANENTFLAGS with it.
func (w *UpdateWriter) WriteMailboxFlags(flags []imap.Flag) error {
	w.c.enc.FlagsResponse(flags)
	w.c.writePermanentFlags(flags)
	return w.done()
}

// WriteMessageFlags reports a message's flags (an unsolicited FETCH).
func (w *UpdateWriter) WriteMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error {
	if w.noFlags {
		return nil
	}
	rw := w.c.enc.BeginFetch(seqNum)
	if uid != 0 {
		rw.WriteUID(uid)
	}
	rw.WriteFlags(flags)
	if modSeq != 0 && w.c.condstore {
		rw.WriteModSeq(modSeq)
	}
	if err := rw.Close(); err != nil {
		return err
	}
	return w.done()
}
