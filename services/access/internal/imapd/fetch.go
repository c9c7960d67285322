package imapd

import (
	"context"
	"fmt"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// metadata lists the index entries of uids (sorted), with envelopes and MIME
// trees if asked.
func (s *session) metadata(uids []uint32, envelope, structure bool) (map[uint32]*storagev1.Message, error) {
	out := map[uint32]*storagev1.Message{}
	if len(uids) == 0 {
		return out, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	req := &storagev1.ListMessagesRequest{AccountId: s.account.Id, MailboxId: s.selected.state.id,
		Uids: storeclient.UIDSetOf(uids), IncludeEnvelope: envelope, IncludeStructure: structure, Limit: 5000}
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

// windowSize is how many messages FETCH and SEARCH handle at a time: they read
// the window's index entries, answer for it, then move on, so that a
// command's memory is a window's, not the mailbox's. 500 entries with
// envelopes are one or two ListMessages pages.
const windowSize = 500

// RFC 9051 6.4.5 FETCH: metadata from the index, bodies from the body store.
// Whole bodies, headers and texts stream as byte ranges; BODYSTRUCTURE comes
// from the MIME tree stored with the message, and parts (and BINARY of a
// part) are read as the byte ranges the tree gives (sections.go). Only
// BINARY of a whole message loads it in memory (bounded by the size limit).
// A message expunged meanwhile by another session is left out of the answer.
func (s *session) Fetch(w *imapconn.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.claimArrivals() // messages announced during IDLE
	v := s.selected
	walk := v.walk(numSet)
	markSeen := false
	for _, bs := range options.BodySection {
		markSeen = markSeen || !bs.Peek
	}
	markSeen = markSeen && !v.readOnly
	s.fetchExt = w.Ext()
	needMeta := options.Envelope || options.InternalDate || options.RFC822Size || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 || options.BodyStructure != nil || s.fetchExt.Any()
	for {
		targets := walk.next(windowSize)
		if len(targets) == 0 {
			return nil
		}
		if options.ChangedSince > 0 {
			targets = changedSince(targets, options.ChangedSince)
		}
		if err := s.fetchWindow(w, targets, options, needMeta, markSeen); err != nil {
			return err
		}
	}
}

// fetchWindow answers FETCH for a window of targets.
func (s *session) fetchWindow(w *imapconn.FetchWriter, targets []target, options *imap.FetchOptions, needMeta, markSeen bool) error {
	var meta map[uint32]*storagev1.Message
	if needMeta {
		var err error
		if meta, err = s.metadata(uidsOf(targets), options.Envelope, needsStructure(options) || s.fetchExt.Preview); err != nil {
			return mapError(err)
		}
	}
	// \Seen is stored before the responses that show it.
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
		err := s.fetchOne(w, t, m, options, markSeen)
		if gone(err) {
			continue // expunged since its entry was read
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// gone reports whether err says the message no longer exists.
func gone(err error) bool {
	return storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_MESSAGE_NOT_FOUND
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
	err := v.changeFlags(func() ([]*storagev1.Message, error) {
		var err error
		resp, err = s.srv.store.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: s.account.Id,
			MailboxId: v.state.id, Uids: storeclient.UIDSetOf(unseen), Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{string(imap.FlagSeen)}})
		return resp.GetMessages(), err
	})
	if err != nil {
		return mapError(err)
	}
	s.selected.state.waitModseq(resp.HighestModseq, selfWait)
	modseqs := make(map[uint32]uint64, len(resp.Messages))
	for _, m := range resp.Messages {
		modseqs[m.Uid] = m.Modseq
	}
	for i, t := range targets {
		if ms, ok := modseqs[t.uid]; ok {
			targets[i].modseq = ms
		}
	}
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

// needsStructure reports whether a FETCH needs the messages' MIME trees:
// for BODYSTRUCTURE, to find the bytes of a part, or for BINARY (its
// transfer encoding, a whole message's included).
func needsStructure(options *imap.FetchOptions) bool {
	need := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, bs := range options.BodySection {
		need = need || len(bs.Part) > 0
	}
	return need
}

// sources is what one message's FETCH response needs from the body store,
// read (or, for streamed ranges, opened) before the response starts.
type sources struct {
	full     []byte          // the whole message, when an item parses it
	header   []byte          // the header, for HEADER sections without full
	streams  []io.ReadCloser // per BodySection: the open range of a streamed one
	parts    [][]byte        // per BodySection: the answer to one with a part number
	binaries [][]byte        // per BinarySection, then per BinarySectionSize: the decoded part
	cancel   context.CancelFunc
}

func (src *sources) close() {
	for _, rc := range src.streams {
		if rc != nil {
			rc.Close()
		}
	}
	src.cancel()
}

// fetchOne writes one message's FETCH response. Everything that can fail
// before the first byte (a message expunged meanwhile) is done before the
// response starts, so that a failure leaves nothing half-written. The
// response writer holds the connection's write lock: it is closed on every
// path, or the command's status, and every later response, would wait forever.
func (s *session) fetchOne(w *imapconn.FetchWriter, t target, m *storagev1.Message, options *imap.FetchOptions, markSeen bool) error {
	src, err := s.openSources(t.uid, m, options)
	if err != nil {
		if gone(err) {
			return err
		}
		return mapError(err)
	}
	defer src.close()
	rw := w.CreateMessage(t.seq)
	err = s.writeItems(rw, t, m, src, options, markSeen)
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	return err
}

// openSources reads what the items need: the whole message if any item parses
// it, else the header if a HEADER section asks for it, and opens the byte
// ranges of BODY[] and BODY[TEXT], which stream.
func (s *session) openSources(uid uint32, m *storagev1.Message, options *imap.FetchOptions) (*sources, error) {
	ctx, cancel := context.WithTimeout(s.base(), max(s.srv.cfg.CommandTimeout, 10*time.Minute))
	src := &sources{cancel: cancel}
	// BINARY of the whole message decodes it as go-imap does, from all of it.
	needFull := false
	for _, bs := range options.BinarySection {
		needFull = needFull || len(bs.Part) == 0
	}
	for _, bs := range options.BinarySectionSize {
		needFull = needFull || len(bs.Part) == 0
	}
	if needsStructure(options) && m.Structure == nil {
		src.close()
		return nil, fmt.Errorf("message %d: the storage tier returned no MIME tree", uid)
	}
	if err := s.readParts(uid, m, options, src); err != nil {
		src.close()
		return nil, err
	}
	var err error
	if needFull {
		if src.full, err = s.readBody(uid, 0, 0); err != nil {
			src.close()
			return nil, err
		}
		return src, nil
	}
	src.streams = make([]io.ReadCloser, len(options.BodySection))
	for i, bs := range options.BodySection {
		if len(bs.Part) > 0 || bs.Specifier == imap.PartSpecifierMIME {
			continue // in src.parts
		}
		if !streamed(bs) {
			if src.header == nil {
				if src.header, err = s.readBody(uid, 0, m.HeaderSize); err != nil {
					src.close()
					return nil, err
				}
			}
			continue
		}
		start, n := streamRange(m, bs)
		if n == 0 {
			continue
		}
		if src.streams[i], err = s.srv.store.BodyReader(ctx, s.account.Id, s.selected.state.id, uid, start, n); err != nil {
			src.close()
			return nil, err
		}
	}
	return src, nil
}

// streamed reports whether a section (without the whole message loaded) is
// a byte range of the stored message: BODY[] or BODY[TEXT], maybe partial.
func streamed(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && (bs.Specifier == imap.PartSpecifierNone || bs.Specifier == imap.PartSpecifierText)
}

// streamRange is the byte range of the stored message that a streamed
// section covers.
func streamRange(m *storagev1.Message, bs *imap.FetchItemBodySection) (start, n uint64) {
	start, total := uint64(0), m.Size
	if bs.Specifier == imap.PartSpecifierText {
		start = min(m.HeaderSize, m.Size)
		total = m.Size - start
	}
	off, n := partialRange(bs.Partial, total)
	return start + off, n
}

func (s *session) writeItems(rw *imapconn.FetchResponseWriter, t target, m *storagev1.Message, src *sources, options *imap.FetchOptions, markSeen bool) error {
	rw.WriteUID(imap.UID(t.uid))
	if options.Flags || markSeen {
		rw.WriteFlags(toIMAPFlags(t.flags)) // \Recent comes from SessionFlags
	}
	// RFC 7162 3.1.4 and 3.2: asked for, or a \Seen set by this FETCH
	// once CONDSTORE is on.
	if options.ModSeq || (markSeen && s.conn.CondStore()) {
		rw.WriteModSeq(t.modseq)
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate.AsTime())
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(int64(m.Size))
	}
	if err := s.writeExtItems(rw, t, m); err != nil {
		return err
	}
	if options.Envelope {
		rw.WriteEnvelope(toEnvelope(m.Envelope))
	}
	full := src.full
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructure(m.Structure))
	}
	for i, bs := range options.BodySection {
		if len(bs.Part) > 0 || bs.Specifier == imap.PartSpecifierMIME {
			if err := writeAll(rw.WriteBodySection(bs, int64(len(src.parts[i]))), src.parts[i]); err != nil {
				return err
			}
			continue
		}
		if full == nil && streamed(bs) {
			if err := s.streamSection(rw, t.uid, m, bs, src.streams[i]); err != nil {
				return err
			}
			continue
		}
		if full != nil && streamed(bs) {
			// The stored bytes themselves, as when streamed: a parser would
			// give up on a message with a malformed header and answer empty.
			start, n := streamRange(m, bs)
			data := full[min(start, uint64(len(full))):min(start+n, uint64(len(full)))]
			if err := writeAll(rw.WriteBodySection(bs, int64(len(data))), data); err != nil {
				return err
			}
			continue
		}
		loaded := full
		if loaded == nil {
			loaded = src.header
		}
		data := messageSection(loaded, bs)
		if err := writeAll(rw.WriteBodySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySection {
		data := src.binaries[i]
		if len(bs.Part) == 0 {
			data = binaryWhole(full, m)
		}
		off, n := partialRange(bs.Partial, uint64(len(data)))
		data = data[off : off+n]
		if err := writeAll(rw.WriteBinarySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySectionSize {
		if len(bs.Part) == 0 {
			rw.WriteBinarySectionSize(bs, uint32(len(binaryWhole(full, m))))
			continue
		}
		rw.WriteBinarySectionSize(bs, uint32(len(src.binaries[len(options.BinarySection)+i])))
	}
	return nil
}

// readParts reads what the sections with a part number need: each one's
// byte range, as the message's MIME tree gives it.
func (s *session) readParts(uid uint32, m *storagev1.Message, options *imap.FetchOptions, src *sources) error {
	read := func(start, end uint64, ok bool) ([]byte, error) {
		if !ok || end <= start {
			return nil, nil // no such part: an empty answer (RFC 9051 6.4.5)
		}
		return s.readBody(uid, start, end-start)
	}
	src.parts = make([][]byte, len(options.BodySection))
	for i, bs := range options.BodySection {
		if len(bs.Part) == 0 {
			continue // MIME without a part names nothing: empty
		}
		data, err := read(sectionRange(m.Structure, bs))
		if err != nil {
			return err
		}
		src.parts[i] = partSection(bs, data)
	}
	var binaryParts [][]int
	for _, bs := range options.BinarySection {
		binaryParts = append(binaryParts, bs.Part)
	}
	for _, bs := range options.BinarySectionSize {
		binaryParts = append(binaryParts, bs.Part)
	}
	src.binaries = make([][]byte, len(binaryParts))
	for i, part := range binaryParts {
		if len(part) == 0 {
			continue // from the whole message
		}
		start, end, encoding, ok := binaryPart(m.Structure, part)
		data, err := read(start, end, ok)
		if err != nil {
			return err
		}
		src.binaries[i] = decodeTransfer(encoding, data)
	}
	return nil
}

// streamSection copies BODY[] or BODY[TEXT] (possibly partial) from the
// opened range to the client, so that memory does not grow with the
// message. The size is known from the index; if the store fails midway the
// connection cannot carry on (the literal is cut), so the error ends it.
func (s *session) streamSection(rw *imapconn.FetchResponseWriter, uid uint32, m *storagev1.Message, bs *imap.FetchItemBodySection, rc io.Reader) error {
	_, n := streamRange(m, bs)
	wc := rw.WriteBodySection(bs, int64(n))
	if n == 0 {
		return wc.Close()
	}
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

// toEnvelope is the ENVELOPE of a stored envelope: the Date, Message-ID and
// In-Reply-To fields as the sender wrote them (unfolded), and absent Sender
// and Reply-To defaulting to From (RFC 9051 7.5.2).
func toEnvelope(e *storagev1.Envelope) *imapconn.Envelope {
	if e == nil {
		return &imapconn.Envelope{}
	}
	env := &imapconn.Envelope{
		Date:      unfold(e.DateRaw),
		Subject:   e.Subject,
		From:      addrs(e.From),
		Sender:    addrs(e.Sender),
		ReplyTo:   addrs(e.ReplyTo),
		To:        addrs(e.To),
		Cc:        addrs(e.Cc),
		Bcc:       addrs(e.Bcc),
		InReplyTo: unfold(e.InReplyTo),
		MessageID: unfold(e.MessageId),
	}
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

// unfold joins a folded header value into one line (RFC 5322 2.2.3).
func unfold(v string) string {
	return strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v))
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

// withoutEmptyMultiparts gives every multipart with no part found (broken
// MIME: a boundary never declared, or never used) one empty text/plain
// part, and every part its extension data (empty if none). RFC 9051's
// body-type-mpart needs at least one body, and go-imap panics on none or on
// a part without extension data in BODYSTRUCTURE — which dropped the
// client's connection mid-FETCH.
func withoutEmptyMultiparts(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for i, child := range b.Children {
			b.Children[i] = withoutEmptyMultiparts(child)
		}
		if len(b.Children) == 0 {
			b.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
				Encoding: "7bit", Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
			}}
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureMultiPartExt{}
		}
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil && b.MessageRFC822.BodyStructure != nil {
			b.MessageRFC822.BodyStructure = withoutEmptyMultiparts(b.MessageRFC822.BodyStructure)
		}
		if b.Extended == nil {
			b.Extended = &imap.BodyStructureSinglePartExt{}
		}
	}
	return bs
}
