package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// metadata lists the index entries of uids (sorted), with envelopes if asked.
func (s *session) metadata(uids []uint32, envelope bool) (map[uint32]*storagev1.Message, error) {
	out := map[uint32]*storagev1.Message{}
	if len(uids) == 0 {
		return out, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	req := &storagev1.ListMessagesRequest{AccountId: s.account.Id, MailboxId: s.selected.state.id,
		Uids: storeclient.UIDSetOf(uids), IncludeEnvelope: envelope, Limit: 5000}
	for {
		resp, err := s.srv.store.Messages.ListMessages(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, m := range resp.Messages {
			out[m.Uid] = m
		}
		if !resp.More {
			return out, nil
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

// readBody reads a byte range of a message (length 0 = to the end).
func (s *session) readBody(uid uint32, offset, length uint64) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rc, err := s.srv.store.BodyReader(ctx, s.account.Id, s.selected.state.id, uid, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// RFC 9051 6.4.5 FETCH: metadata from the index, bodies from the body store.
// Whole bodies, headers and texts stream as byte ranges; parts, BINARY and
// BODYSTRUCTURE parse the whole message in memory (bounded by the size limit).
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	v := s.selected
	targets := v.resolve(numSet)
	if len(targets) == 0 {
		return nil
	}
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	markSeen = markSeen && !v.readOnly
	needMeta := options.Envelope || options.InternalDate || options.RFC822Size || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 || options.BodyStructure != nil
	var meta map[uint32]*storagev1.Message
	if needMeta {
		var err error
		if meta, err = s.metadata(uidsOf(targets), options.Envelope); err != nil {
			return mapError(err)
		}
	}
	if markSeen {
		if err := s.markSeen(targets); err != nil {
			return err
		}
	}
	for _, t := range targets {
		m := meta[t.uid]
		if needMeta && m == nil {
			continue // expunged meanwhile: nothing to say about it
		}
		if err := s.fetchOne(w.CreateMessage(t.seq), t, m, options, markSeen); err != nil {
			return err
		}
	}
	return nil
}

// markSeen sets \Seen on targets that lack it, as a non-PEEK body fetch must.
func (s *session) markSeen(targets []target) error {
	var unseen []uint32
	for i, t := range targets {
		if !hasFlag(t.flags, string(imap.FlagSeen)) {
			unseen = append(unseen, t.uid)
			targets[i].flags = append(append([]string(nil), t.flags...), string(imap.FlagSeen))
		}
	}
	if len(unseen) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	v := s.selected
	var resp *storagev1.StoreFlagsResponse
	err := v.state.ownFlagChange(v.tracker, func() ([]*storagev1.Message, error) {
		var err error
		resp, err = s.srv.store.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: s.account.Id,
			MailboxId: v.state.id, Uids: storeclient.UIDSetOf(unseen), Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{string(imap.FlagSeen)}})
		return resp.GetMessages(), err
	})
	if err != nil {
		return mapError(err)
	}
	s.selected.state.waitModseq(resp.HighestModseq, selfWait)
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func (s *session) fetchOne(rw *imapserver.FetchResponseWriter, t target, m *storagev1.Message, options *imap.FetchOptions, markSeen bool) error {
	rw.WriteUID(imap.UID(t.uid))
	if options.Flags || markSeen {
		rw.WriteFlags(toIMAPFlags(t.flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate.AsTime())
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(int64(m.Size))
	}
	if options.Envelope {
		rw.WriteEnvelope(toIMAPEnvelope(m.Envelope))
	}
	// Load the whole message once if any item needs it parsed.
	var full []byte
	needFull := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, bs := range options.BodySection {
		needFull = needFull || len(bs.Part) > 0 || bs.Specifier == imap.PartSpecifierMIME
	}
	if needFull {
		var err error
		if full, err = s.readBody(t.uid, 0, 0); err != nil {
			return mapError(err)
		}
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(full)))
	}
	for _, bs := range options.BodySection {
		if full == nil && len(bs.Part) == 0 && (bs.Specifier == imap.PartSpecifierNone || bs.Specifier == imap.PartSpecifierText) {
			// The whole message or its text: stream the byte range, so that
			// memory does not grow with the message.
			if err := s.streamSection(rw, t.uid, m, bs); err != nil {
				return err
			}
			continue
		}
		data, err := s.section(t.uid, m, bs, full)
		if err != nil {
			return mapError(err)
		}
		if err := writeAll(rw.WriteBodySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		data := imapserver.ExtractBinarySection(bytes.NewReader(full), bs)
		if err := writeAll(rw.WriteBinarySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(bytes.NewReader(full), bs))
	}
	return rw.Close()
}

// streamSection copies BODY[] or BODY[TEXT] (possibly partial) from the body
// store to the client. The size is known from the index; if the store fails
// midway the connection cannot carry on (the literal is cut), so the error
// ends it.
func (s *session) streamSection(rw *imapserver.FetchResponseWriter, uid uint32, m *storagev1.Message, bs *imap.FetchItemBodySection) error {
	start, total := uint64(0), m.Size
	if bs.Specifier == imap.PartSpecifierText {
		start = min(m.HeaderSize, m.Size)
		total = m.Size - start
	}
	off, n := partialRange(bs.Partial, total)
	wc := rw.WriteBodySection(bs, int64(n))
	if n == 0 {
		return wc.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(s.srv.cfg.CommandTimeout, 10*time.Minute))
	defer cancel()
	rc, err := s.srv.store.BodyReader(ctx, s.account.Id, s.selected.state.id, uid, start+off, n)
	if err != nil {
		wc.Close()
		return fmt.Errorf("reading message %d: %w", uid, err)
	}
	defer rc.Close()
	copied, err := io.Copy(wc, rc)
	if err == nil && uint64(copied) != n {
		err = fmt.Errorf("message %d: %d of %d bytes", uid, copied, n)
	}
	if err != nil {
		// The literal is cut: the client could not tell what follows, so
		// the connection ends here and the client reconnects.
		s.log.Warn("body stream failed; closing the connection", "uid", uid, "err", err)
		s.conn.NetConn().Close()
		return err
	}
	return wc.Close()
}

// section returns the bytes of one BODY[...] item, reading only the byte
// range it needs when the section is the header.
func (s *session) section(uid uint32, m *storagev1.Message, bs *imap.FetchItemBodySection, full []byte) ([]byte, error) {
	if full != nil || len(bs.Part) > 0 {
		if full == nil {
			var err error
			if full, err = s.readBody(uid, 0, 0); err != nil {
				return nil, err
			}
		}
		return imapserver.ExtractBodySection(bytes.NewReader(full), bs), nil
	}
	switch {
	case bs.Specifier == imap.PartSpecifierNone:
		off, n := partialRange(bs.Partial, m.Size)
		if n == 0 {
			return nil, nil
		}
		return s.readBody(uid, off, n)
	case bs.Specifier == imap.PartSpecifierText:
		textSize := m.Size - min(m.HeaderSize, m.Size)
		off, n := partialRange(bs.Partial, textSize)
		if n == 0 {
			return nil, nil
		}
		return s.readBody(uid, m.HeaderSize+off, n)
	default: // HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT
		header, err := s.readBody(uid, 0, m.HeaderSize)
		if err != nil {
			return nil, err
		}
		return imapserver.ExtractBodySection(bytes.NewReader(header), bs), nil
	}
}

// partialRange turns <offset.size> into a byte range within total bytes.
func partialRange(p *imap.SectionPartial, total uint64) (off, n uint64) {
	if p == nil {
		return 0, total
	}
	off = uint64(p.Offset)
	if off >= total {
		return 0, 0
	}
	n = total - off
	if p.Size > 0 && uint64(p.Size) < n {
		n = uint64(p.Size)
	}
	return off, n
}

func writeAll(wc io.WriteCloser, data []byte) error {
	_, werr := wc.Write(data)
	cerr := wc.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// toIMAPEnvelope converts the stored envelope (RFC 9051 7.5.2: absent Sender
// and Reply-To default to From).
func toIMAPEnvelope(e *storagev1.Envelope) *imap.Envelope {
	if e == nil {
		return &imap.Envelope{}
	}
	env := &imap.Envelope{
		Subject:   e.Subject,
		From:      addrs(e.From),
		Sender:    addrs(e.Sender),
		ReplyTo:   addrs(e.ReplyTo),
		To:        addrs(e.To),
		Cc:        addrs(e.Cc),
		Bcc:       addrs(e.Bcc),
		MessageID: strings.Trim(e.MessageId, "<> "),
	}
	if e.Date != nil {
		env.Date = e.Date.AsTime()
	}
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	for _, id := range strings.Fields(strings.NewReplacer(">", "> ", ",", " ").Replace(e.InReplyTo)) {
		if id = strings.Trim(id, "<>"); id != "" {
			env.InReplyTo = append(env.InReplyTo, id)
		}
	}
	return env
}

func addrs(in []*storagev1.Address) []imap.Address {
	out := make([]imap.Address, 0, len(in))
	for _, a := range in {
		out = append(out, imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host})
	}
	return out
}
