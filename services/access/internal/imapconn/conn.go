package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Read deadlines: a command's line and literals, and the autologout timer
// of an authenticated session (RFC 9051 section 5.4: at least 30 minutes).
const (
	preAuthTimeout = 60 * time.Second
	commandTimeout = 5 * time.Minute
	idleTimeout    = 31 * time.Minute
	writeTimeout   = 5 * time.Minute
	// maxBadCommands before login end the connection (a client that is
	// not speaking IMAP).
	maxBadCommands = 3
	// maxDiscardLiteral: a refused command's non-synchronizing literal of
	// up to this size is read and dropped; a larger one ends the connection.
	maxDiscardLiteral = 64 << 10
)

// Options configure a Server.
type Options struct {
	// NewSession makes the backend of a new connection.
	NewSession func(c *Conn) (Session, error)
	// Caps are the extensions the sessions back (announced after login).
	Caps imap.CapSet
	// TLSConfig enables STARTTLS; nil disables it.
	TLSConfig *tls.Config
	// InsecureAuth allows LOGIN and AUTHENTICATE without TLS (development).
	InsecureAuth bool
	Logger       *slog.Logger
}

// Server accepts IMAP connections.
type Server struct {
	opts Options

	mu        sync.Mutex
	conns     map[*Conn]struct{}
	listeners []net.Listener
	closed    bool
	serving   sync.WaitGroup // connections whose serve has not returned
}

// NewServer returns a server.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{opts: opts, conns: map[*Conn]struct{}{}}
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.serving.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Close stops accepting and ends every connection with BYE.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := s.listeners
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range conns {
		c.Bye("Server shutting down, please reconnect")
	}
	return nil
}

// Wait waits until every connection has ended (after Close, each says BYE
// at its next opportunity and closes) or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Conn is one client connection.
type Conn struct {
	srv     *Server
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	dec     *Decoder
	enc     *Encoder
	session Session
	log     *slog.Logger

	state     imap.ConnState
	enabled   imap.CapSet
	condstore bool
	readOnly  bool
	bad       int // client errors before login

	// compressed: COMPRESS DEFLATE is on (RFC 4978).
	compressed bool
	// notifying: NOTIFY SET is in force (RFC 5465); the session may write
	// between commands.
	notifying bool

	// in and out are what br and bw read from and write to; first holds
	// the byte that woke a connection waiting without buffers.
	in    io.Reader
	out   io.Writer
	first firstByte

	// bye is set by another goroutine (shutdown): the connection says BYE
	// at the next opportunity and ends.
	bye     atomic.Pointer[string]
	byeOnce sync.Once
	byeCh   chan struct{}
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{srv: s, nc: nc, log: s.opts.Logger, enabled: imap.CapSet{}, byeCh: make(chan struct{})}
	c.setStreams(nc)
	return c
}

// setStreams (re)builds the reader, writer, decoder and encoder on nc
// (after STARTTLS, on the TLS connection).
func (c *Conn) setStreams(nc net.Conn) {
	c.nc = nc
	c.setCodec(nc, nc)
}

// setCodec (re)builds the reader, writer, decoder and encoder on r and w
// (nc, or the compression layer over it).
func (c *Conn) setCodec(r io.Reader, w io.Writer) {
	c.in, c.out = r, w
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(r)
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
	}
	c.bw = nil
	c.acquireWriter()
	c.dec = NewDecoder(c.br)
	c.dec.Continue = func() error {
		c.enc.Continuation("Ready for literal data")
		return c.flush()
	}
	c.enc = NewEncoder(c.bw)
	c.enc.SessionFlags = c.sessionFlags
	c.applyEnabled()
}

// The reader's and writer's buffers (4 KiB each; literals larger than the
// buffer pass through it directly) come from pools while the connection
// works and go back while it waits for the client, which is most of a
// session's life: an idle session holds no buffer (tens of thousands of
// them per pod).
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// acquireWriter gives the connection a writer buffer if it has none.
func (c *Conn) acquireWriter() {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.out)
		if c.enc != nil {
			c.enc.w = c.bw
		}
	}
}

// releaseWriter hands an empty writer buffer back; nothing may be written
// until acquireWriter.
func (c *Conn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw, c.enc.w = nil, nil
	}
}

// waitForInput blocks until the client sends something (or the read
// deadline passes), with the reader's buffer back in its pool meanwhile.
// Under COMPRESS the inflater keeps reading from the reader it was given,
// so that one stays.
func (c *Conn) waitForInput() {
	if c.compressed || c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br, c.dec.r = nil, nil
	n, err := c.in.Read(c.first.b[:])
	c.first = firstByte{b: c.first.b, has: n > 0, err: err, r: c.in}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.first)
	c.dec.r = c.br
}

// firstByte reads the byte (or the error) that ended waitForInput, then
// the connection.
type firstByte struct {
	b   [1]byte
	has bool
	err error
	r   io.Reader
}

func (f *firstByte) Read(p []byte) (int, error) {
	switch {
	case len(p) == 0:
		return 0, nil
	case f.has:
		f.has = false
		p[0] = f.b[0]
		return 1, nil
	case f.err != nil:
		err := f.err
		f.err = nil
		return 0, err
	}
	return f.r.Read(p)
}

// NetConn is the connection (a *tls.Conn once TLS is on).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Enabled returns the capabilities the client enabled (ENABLE).
func (c *Conn) Enabled() imap.CapSet { return c.enabled }

// Bye ends the connection with an untagged BYE, from any goroutine: the
// connection writes it itself at its next step (a command in progress
// finishes first; an idle read or IDLE is interrupted).
func (c *Conn) Bye(text string) error {
	c.byeOnce.Do(func() {
		c.bye.Store(&text)
		close(c.byeCh)
		c.nc.SetReadDeadline(time.Now()) // wake a blocked read
	})
	return nil
}

// setReadDeadline sets the read deadline, unless Bye has asked to wake the
// reader: then it stays in the past. Bye stores its text before it sets the
// deadline, so checking the text after setting ours leaves no moment in which
// ours could overwrite Bye's (the session would then sleep through the
// shutdown until its idle timeout).
func (c *Conn) setReadDeadline(t time.Time) {
	c.nc.SetReadDeadline(t)
	if c.bye.Load() != nil {
		c.nc.SetReadDeadline(time.Now())
	}
}

func (c *Conn) rev2() bool { return c.enabled.Has(imap.CapIMAP4rev2) }

// applyEnabled passes what ENABLE switched on to the parser and encoder.
func (c *Conn) applyEnabled() {
	utf8 := c.rev2() || c.enabled.Has(imap.CapUTF8Accept)
	c.dec.UTF8, c.enc.UTF8, c.enc.Rev2 = utf8, utf8, c.rev2()
}

func (c *Conn) flush() error {
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.enc.Err(); err != nil {
		return err
	}
	if c.bw == nil {
		return nil // nothing written since the buffer went back
	}
	return c.bw.Flush()
}

func (c *Conn) tlsOn() bool {
	_, ok := c.nc.(*tls.Conn)
	return ok
}

// serve runs the connection until it ends.
func (c *Conn) serve() {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("imap connection panicked", "panic", r, "stack", string(debug.Stack()))
		}
		if c.session != nil {
			c.session.Close()
		}
		c.nc.Close()
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.srv.serving.Done()
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		// Implicit TLS: the listener may have finished the handshake.
		tc.SetDeadline(time.Now().Add(preAuthTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
	}
	var err error
	if c.session, err = c.srv.opts.NewSession(c); err != nil {
		c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Service unavailable, try later")
		c.flush()
		return
	}
	c.state = imap.ConnStateNotAuthenticated
	c.enc.StatusResponse("*", imap.StatusResponseTypeOK, "CAPABILITY", func() { c.enc.SP(); c.writeCapList() }, "Mailfleet IMAP ready")
	if c.flush() != nil {
		return
	}
	for c.state != imap.ConnStateLogout {
		if text := c.bye.Load(); text != nil {
			c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, *text)
			c.flush()
			return
		}
		if err := c.readAndRun(); err != nil {
			if text := c.bye.Load(); text != nil {
				continue // say BYE at the top of the loop
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errConnClosed) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Autologout: idle for too long")
					c.flush()
				} else {
					c.log.Debug("imap connection ended", "err", err)
				}
			}
			return
		}
	}
}

// readAndRun reads one command and runs it. A returned error ends the
// connection; client errors are answered and return nil.
func (c *Conn) readAndRun() error {
	timeout := commandTimeout
	switch c.state {
	case imap.ConnStateNotAuthenticated:
		timeout = preAuthTimeout
	case imap.ConnStateAuthenticated, imap.ConnStateSelected:
		timeout = idleTimeout
	}
	c.setReadDeadline(time.Now().Add(timeout))
	// Every response is flushed: wait for the next command without buffers.
	if err := c.waitForCommand(); err != nil {
		return err
	}
	c.dec.Begin()
	// Skip empty lines some clients send.
	for c.dec.AtEOL() {
		if err := c.dec.CRLF(); err != nil {
			return err
		}
	}
	tag, err := c.dec.Tag()
	if err == nil {
		c.setReadDeadline(time.Now().Add(commandTimeout))
		err = c.dec.SP()
	}
	if err != nil {
		if IsClientError(err) {
			return c.clientError("*", err)
		}
		return err
	}
	name, err := c.dec.Atom()
	if err != nil {
		if IsClientError(err) {
			return c.clientError(tag, err)
		}
		return err
	}
	name = strings.ToUpper(name)
	uid := false
	if name == "UID" {
		uid = true
		if err = c.dec.SP(); err == nil {
			name, err = c.dec.Atom()
			name = strings.ToUpper(name)
		}
		if err != nil {
			if IsClientError(err) {
				return c.clientError(tag, err)
			}
			return err
		}
	}
	err = c.run(tag, name, uid)
	if err == nil {
		return c.flush()
	}
	if IsClientError(err) {
		return c.clientError(tag, err)
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Type == imap.StatusResponseTypeBye {
		// The session cannot go on: BYE is untagged, and the end.
		c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, imapErr.Text)
		c.flush()
		return errConnClosed
	}
	if errors.As(err, &imapErr) {
		// The session refused (NO) or found a client error (BAD); the
		// command's line has been read to its end by then.
		c.writeStatus(tag, (*imap.StatusResponse)(imapErr))
		return c.flush()
	}
	var ne net.Error
	if c.enc.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, errConnClosed) {
		return err // the connection is broken
	}
	// A fault of ours, not the client's: say so, and go on.
	c.log.Error("imap command failed", "command", name, "err", err)
	c.enc.StatusResponse(tag, imap.StatusResponseTypeNo, imap.ResponseCodeServerBug, nil, "Internal server error")
	return c.flush()
}

// clientError answers a malformed or refused command and skips its rest.
func (c *Conn) clientError(tag string, err error) error {
	var tooBig *LiteralTooBigError
	if errors.As(err, &tooBig) {
		if tooBig.NonSync {
			// RFC 7888 section 4: the client is sending the literal
			// already; its bytes must never be read as commands.
			c.enc.StatusResponse(tag, imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, nil, err.Error())
			c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Literal too big, closing the connection")
			c.flush()
			return errConnClosed
		}
		c.enc.StatusResponse(tag, imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, nil, err.Error())
		return c.flush()
	}
	if errors.Is(err, ErrLineTooLong) {
		c.enc.StatusResponse(tag, imap.StatusResponseTypeBad, "", nil, "Command line too long")
		c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Command line too long, closing the connection")
		c.flush()
		return errConnClosed
	}
	if derr := c.dec.DiscardCommand(maxDiscardLiteral); derr != nil {
		c.enc.StatusResponse(tag, imap.StatusResponseTypeBad, "", nil, err.Error())
		c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Closing the connection")
		c.flush()
		return errConnClosed
	}
	c.enc.StatusResponse(tag, imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, nil, err.Error())
	if c.state == imap.ConnStateNotAuthenticated {
		if c.bad++; c.bad >= maxBadCommands {
			c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Too many invalid commands")
			c.flush()
			return errConnClosed
		}
	}
	return c.flush()
}

// writeStatus writes a status response (tagged or untagged).
func (c *Conn) writeStatus(tag string, r *imap.StatusResponse) {
	text := r.Text
	if text == "" {
		text = strings.ToLower(string(r.Type))
	}
	c.enc.StatusResponse(tag, r.Type, r.Code, nil, text)
}

// ok writes the tagged OK of a command.
func (c *Conn) ok(tag, name string) error {
	c.enc.StatusResponse(tag, imap.StatusResponseTypeOK, "", nil, name+" completed")
	return c.enc.Err()
}

// errNotState refuses a command in the wrong state.
func errNotState(name string) error {
	return syntaxErr("%s is not allowed in this state", name)
}

// run parses the arguments of a command and executes it.
func (c *Conn) run(tag, name string, uid bool) error {
	if uid {
		switch name {
		case "FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD":
		default:
			return syntaxErr("unknown command UID %s", name)
		}
	}
	need := func(states ...imap.ConnState) error {
		for _, s := range states {
			if c.state == s {
				return nil
			}
		}
		return errNotState(name)
	}
	authed := []imap.ConnState{imap.ConnStateAuthenticated, imap.ConnStateSelected}
	switch name {
	case "CAPABILITY":
		return c.noArgs(tag, name, func() error { c.writeCapability(); return nil })
	case "NOOP", "CHECK":
		if name == "CHECK" {
			if err := need(imap.ConnStateSelected); err != nil {
				return err
			}
		}
		return c.noArgs(tag, name, func() error { return c.poll(true) })
	case "LOGOUT":
		return c.noArgs(tag, name, func() error {
			c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Logging out")
			c.state = imap.ConnStateLogout
			return nil
		})
	case "ID":
		if _, err := c.dec.ParseID(); err != nil {
			return err
		}
		if err := c.dec.CRLF(); err != nil {
			return err
		}
		c.enc.ID(map[string]string{"name": "Mailfleet"})
		return c.ok(tag, name)
	case "STARTTLS":
		if err := need(imap.ConnStateNotAuthenticated); err != nil {
			return err
		}
		return c.startTLS(tag)
	case "LOGIN":
		if err := need(imap.ConnStateNotAuthenticated); err != nil {
			return err
		}
		return c.login(tag)
	case "AUTHENTICATE":
		if err := need(imap.ConnStateNotAuthenticated); err != nil {
			return err
		}
		return c.authenticate(tag)
	}
	if c.state == imap.ConnStateNotAuthenticated {
		if known(name) {
			return errNotState(name)
		}
		// Not IMAP (an HTTP request, a port scan): end it at once.
		c.dec.DiscardCommand(0)
		c.enc.StatusResponse(tag, imap.StatusResponseTypeBad, "", nil, "Unknown command")
		c.enc.StatusResponse("*", imap.StatusResponseTypeBye, "", nil, "Not an IMAP client, closing the connection")
		c.flush()
		return errConnClosed
	}
	switch name {
	case "ENABLE":
		return c.enable(tag)
	case "COMPRESS":
		return c.compress(tag)
	case "SELECT", "EXAMINE":
		return c.selectMailbox(tag, name == "EXAMINE")
	case "CREATE":
		mbox, opts, err := c.dec.ParseCreate()
		return c.create(tag, mbox, opts, err)
	case "DELETE":
		mbox, err := c.dec.ParseMailbox()
		return c.simple(tag, name, err, func() error { return c.session.Delete(mbox) })
	case "RENAME":
		from, to, err := c.dec.ParseRename()
		return c.simple(tag, name, err, func() error { return c.session.Rename(from, to, &imap.RenameOptions{}) })
	case "SUBSCRIBE":
		mbox, err := c.dec.ParseMailbox()
		return c.simple(tag, name, err, func() error { return c.session.Subscribe(mbox) })
	case "UNSUBSCRIBE":
		mbox, err := c.dec.ParseMailbox()
		return c.simple(tag, name, err, func() error { return c.session.Unsubscribe(mbox) })
	case "LIST", "LSUB":
		return c.list(tag, name)
	case "NAMESPACE":
		return c.noArgs(tag, name, func() error {
			data, err := c.session.Namespace()
			if err != nil {
				return err
			}
			c.enc.Namespace(data)
			return nil
		})
	case "STATUS":
		return c.status(tag)
	case "GETQUOTAROOT":
		return c.getQuotaRoot(tag)
	case "GETQUOTA":
		return c.getQuota(tag)
	case "SETQUOTA":
		return c.setQuota()
	case "APPEND":
		return c.appendCmd(tag)
	case "IDLE":
		return c.idle(tag)
	case "NOTIFY":
		return c.notify(tag)
	case "UNAUTHENTICATE":
		return c.noArgs(tag, name, func() error {
			if c.state == imap.ConnStateSelected {
				c.session.Unselect()
			}
			if err := c.session.Unauthenticate(); err != nil {
				return err
			}
			c.state = imap.ConnStateNotAuthenticated
			c.notifying = false // the session dropped it
			return nil
		})
	}
	if err := need(authed...); err != nil {
		return err
	}
	if c.state != imap.ConnStateSelected {
		if known(name) {
			return errNotState(name)
		}
		return syntaxErr("unknown command %s", name)
	}
	kind := NumKindSeq
	if uid {
		kind = NumKindUID
	}
	switch name {
	case "CLOSE", "UNSELECT":
		return c.noArgs(tag, name, func() error {
			if name == "CLOSE" && !c.readOnly {
				// RFC 9051 6.4.1: CLOSE expunges silently (not after EXAMINE).
				if err := c.session.Expunge(&ExpungeWriter{}, nil); err != nil {
					return err
				}
			}
			if err := c.session.Unselect(); err != nil {
				return err
			}
			c.state = imap.ConnStateAuthenticated
			return nil
		})
	case "EXPUNGE":
		var uids *imap.UIDSet
		if uid {
			set, err := c.dec.ParseUIDSet()
			if err != nil {
				return err
			}
			uids = &set
		}
		if err := c.dec.CRLF(); err != nil {
			return err
		}
		if c.readOnly {
			return readOnlyErr()
		}
		if err := c.session.Expunge(&ExpungeWriter{c: c}, uids); err != nil {
			return err
		}
		return c.expungeCompleted(tag, name)
	case "SEARCH":
		return c.search(tag, kind)
	case "CANCELUPDATE":
		if uid {
			return syntaxErr("unknown command UID CANCELUPDATE")
		}
		return c.cancelUpdate(tag)
	case "SORT":
		return c.sortCmd(tag, kind)
	case "THREAD":
		return c.threadCmd(tag, kind)
	case "FETCH":
		return c.fetch(tag, kind)
	case "STORE":
		return c.store(tag, kind)
	case "COPY", "MOVE":
		return c.copyOrMove(tag, name, kind)
	}
	return syntaxErr("unknown command %s", name)
}

// known reports whether name is a command this server implements (so a
// state error is told apart from an unknown command).
func known(name string) bool {
	switch name {
	case "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",
		"NAMESPACE", "STATUS", "APPEND", "IDLE", "UNAUTHENTICATE", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH",
		"STORE", "COPY", "MOVE", "CHECK", "GETQUOTAROOT", "GETQUOTA", "SETQUOTA", "SORT", "THREAD", "COMPRESS", "NOTIFY",
		"CANCELUPDATE":
		return true
	}
	return false
}

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "The mailbox is open read-only (EXAMINE)"}
}

// noArgs runs a command that takes no arguments.
func (c *Conn) noArgs(tag, name string, do func() error) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := do(); err != nil {
		return err
	}
	if c.state == imap.ConnStateLogout {
		c.ok(tag, name)
		c.flush()
		return nil
	}
	return c.ok(tag, name)
}

// simple runs a command whose arguments were parsed (perr) and whose answer
// is OK, then polls for updates.
func (c *Conn) simple(tag, name string, perr error, do func() error) error {
	if perr != nil {
		return perr
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := do(); err != nil {
		return err
	}
	if err := c.poll(c.state == imap.ConnStateSelected); err != nil {
		return err
	}
	return c.ok(tag, name)
}

// poll writes the selected mailbox's pending updates.
func (c *Conn) poll(allowExpunge bool) error {
	if c.state != imap.ConnStateSelected && c.state != imap.ConnStateAuthenticated {
		return nil
	}
	return c.session.Poll(&UpdateWriter{c: c}, allowExpunge)
}

// capabilities lists what the connection announces now.
func (c *Conn) capabilities() []imap.Cap {
	caps := []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2}
	caps = append(caps, imap.CapLiteralPlus, imap.CapSASLIR, imap.CapID, imap.CapEnable, imap.CapIdle)
	if c.state == imap.ConnStateNotAuthenticated {
		if c.srv.opts.TLSConfig != nil && !c.tlsOn() {
			caps = append(caps, imap.CapStartTLS)
		}
		if c.tlsOn() || c.srv.opts.InsecureAuth {
			for _, m := range c.session.AuthenticateMechanisms() {
				caps = append(caps, imap.Cap("AUTH="+m))
			}
		} else {
			caps = append(caps, imap.CapLoginDisabled)
		}
		return caps
	}
	for _, cp := range []imap.Cap{imap.CapUnselect, imap.CapUTF8Accept, imap.CapNamespace, imap.CapUIDPlus,
		imap.CapESearch, imap.CapSearchRes, imap.CapListExtended, imap.CapListStatus, imap.CapMove,
		imap.CapStatusSize, imap.CapBinary, imap.CapChildren, imap.CapSpecialUse, imap.CapCreateSpecialUse,
		imap.CapUnauthenticate} {
		if cp == imap.CapUnselect || cp == imap.CapUTF8Accept || c.srv.opts.Caps.Has(cp) {
			caps = append(caps, cp)
		}
	}
	caps = append(caps, quotaCaps...)
	caps = append(caps, condStoreCaps...)
	if _, ok := c.session.(Sorter); ok {
		caps = append(caps, sortCaps...)
	}
	if _, ok := c.session.(SearchContexts); ok {
		caps = append(caps, capContextSearch)
	}
	caps = append(caps, capCompressDeflate)
	caps = append(caps, c.extensionCaps()...)
	caps = append(caps, imap.Cap(fmt.Sprintf("APPENDLIMIT=%d", c.session.AppendLimit())))
	return caps
}

func (c *Conn) writeCapList() {
	caps := c.capabilities()
	for i, cp := range caps {
		if i > 0 {
			c.enc.SP()
		}
		c.enc.Atom(string(cp))
	}
}

func (c *Conn) writeCapability() { c.enc.Capability(c.capabilities()) }

func (c *Conn) startTLS(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.srv.opts.TLSConfig == nil || c.tlsOn() {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "STARTTLS is not available"}
	}
	if c.br.Buffered() > 0 {
		// RFC 9051 6.2.1: nothing may follow STARTTLS before the handshake
		// (a plaintext command injected here would run under TLS).
		c.enc.StatusResponse(tag, imap.StatusResponseTypeBad, "", nil, "Data after STARTTLS")
		c.flush()
		return errConnClosed
	}
	c.enc.StatusResponse(tag, imap.StatusResponseTypeOK, "", nil, "Begin TLS negotiation now")
	if err := c.flush(); err != nil {
		return err
	}
	tc := tls.Server(c.nc, c.srv.opts.TLSConfig)
	tc.SetDeadline(time.Now().Add(preAuthTimeout))
	if err := tc.Handshake(); err != nil {
		return errConnClosed
	}
	tc.SetDeadline(time.Time{})
	c.setStreams(tc)
	return nil
}

// authAllowed refuses passwords over plaintext.
func (c *Conn) authAllowed() error {
	if c.tlsOn() || c.srv.opts.InsecureAuth {
		return nil
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodePrivacyRequired, Text: "TLS is required to log in (STARTTLS)"}
}

func (c *Conn) login(tag string) error {
	user, pass, err := c.dec.ParseLogin()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.authAllowed(); err != nil {
		return err
	}
	if err := c.session.Login(user, pass); err != nil {
		return err
	}
	c.state = imap.ConnStateAuthenticated
	c.enc.StatusResponse(tag, imap.StatusResponseTypeOK, "CAPABILITY", func() { c.enc.SP(); c.writeCapList() }, "Logged in")
	return c.enc.Err()
}

func (c *Conn) authenticate(tag string) error {
	mech, initial, hasInitial, err := c.dec.ParseAuthenticate()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.authAllowed(); err != nil {
		return err
	}
	srv, err := c.session.Authenticate(mech)
	if err != nil {
		return err
	}
	resp := initial
	if !hasInitial {
		resp = nil
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				return ErrAuthFailed
			}
			var imapErr *imap.Error
			if errors.As(err, &imapErr) {
				return err
			}
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed"}
		}
		if done {
			break
		}
		c.enc.ContinuationBase64(challenge)
		if err := c.flush(); err != nil {
			return err
		}
		c.dec.Begin()
		line, err := c.readLine(8 << 10)
		if err != nil {
			return err
		}
		if line == "*" {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Authentication cancelled"}
		}
		if resp, err = base64.StdEncoding.DecodeString(line); err != nil {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid base64 in the SASL response"}
		}
	}
	c.state = imap.ConnStateAuthenticated
	c.enc.StatusResponse(tag, imap.StatusResponseTypeOK, "CAPABILITY", func() { c.enc.SP(); c.writeCapList() }, "Authenticated")
	return c.enc.Err()
}

// readLine reads one line of at most max bytes (a SASL response).
func (c *Conn) readLine(max int) (string, error) {
	var sb strings.Builder
	for {
		b, err := c.br.ReadByte()
		if err != nil {
			return "", err
		}
		if b == '\n' {
			return strings.TrimSuffix(sb.String(), "\r"), nil
		}
		if sb.Len() >= max {
			return "", errConnClosed
		}
		sb.WriteByte(b)
	}
}

func (c *Conn) enable(tag string) error {
	caps, err := c.dec.ParseEnable()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	var enabled []imap.Cap
	for _, cp := range caps {
		switch cp {
		case imap.CapIMAP4rev2, imap.CapUTF8Accept:
			if !c.enabled.Has(cp) {
				c.enabled[cp] = struct{}{}
				enabled = append(enabled, cp)
			}
		default:
			c.enableCondStore(cp, &enabled)
		}
	}
	c.applyEnabled()
	c.enc.Enabled(enabled)
	return c.ok(tag, "ENABLE")
}

func (c *Conn) selectMailbox(tag string, readOnly bool) error {
	name, opts, qresync, err := c.dec.ParseSelectQResync()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if qresync != nil && !c.QResync() {
		// RFC 7162 3.2.5: QRESYNC before ENABLE QRESYNC is a client error.
		return badAfterLine("ENABLE QRESYNC first")
	}
	if opts.CondStore {
		c.condstore = true // RFC 7162 3.1.8: a CONDSTORE enabling command
	}
	if c.state == imap.ConnStateSelected {
		if err := c.session.Unselect(); err != nil {
			return err
		}
		c.state = imap.ConnStateAuthenticated
		// RFC 9051 7.1: the previous mailbox is closed.
		c.enc.StatusResponse("*", imap.StatusResponseTypeOK, "CLOSED", nil, "Previous mailbox is now closed")
	}
	opts.ReadOnly = readOnly
	data, err := c.session.Select(name, opts)
	if err != nil {
		return err
	}
	c.readOnly = readOnly
	e := c.enc
	e.FlagsResponse(data.Flags)
	e.Exists(data.NumMessages)
	if !c.rev2() {
		e.Recent(data.NumRecent)
		if data.FirstUnseenSeqNum != 0 {
			e.StatusResponse("*", imap.StatusResponseTypeOK, "UNSEEN", func() { e.SP(); e.Number(data.FirstUnseenSeqNum) }, "First unseen")
		}
	}
	e.StatusResponse("*", imap.StatusResponseTypeOK, "UIDVALIDITY", func() { e.SP(); e.Number(data.UIDValidity) }, "UIDs valid")
	e.StatusResponse("*", imap.StatusResponseTypeOK, "UIDNEXT", func() { e.SP(); e.Number(uint32(data.UIDNext)) }, "Predicted next UID")
	if readOnly {
		e.StatusResponse("*", imap.StatusResponseTypeOK, "PERMANENTFLAGS", func() { e.SP(); e.Flags(nil) }, "No permanent flags permitted")
	} else {
		c.writePermanentFlags(data.PermanentFlags)
	}
	if data.List != nil {
		e.ListResponse(data.List, false)
	}
	// RFC 7162 3.1.2.1: every SELECT of a mailbox with persistent modseqs.
	e.StatusResponse("*", imap.StatusResponseTypeOK, "HIGHESTMODSEQ", func() { e.SP(); e.Number64(data.HighestModSeq) }, "Highest")
	c.writeMailboxIDCode()
	c.state = imap.ConnStateSelected
	if err := c.qresyncSelect(data, qresync); err != nil {
		return err
	}
	code, cmd := imap.ResponseCode("READ-WRITE"), "SELECT"
	if readOnly {
		code, cmd = "READ-ONLY", "EXAMINE"
	}
	e.StatusResponse(tag, imap.StatusResponseTypeOK, code, nil, cmd+" completed")
	return e.Err()
}

// writePermanentFlags writes the PERMANENTFLAGS response code: the flags
// and \* (new keywords may be created).
func (c *Conn) writePermanentFlags(flags []imap.Flag) {
	e := c.enc
	perm := append([]imap.Flag(nil), flags...)
	hasWildcard := false
	for _, f := range perm {
		if f == imap.FlagWildcard {
			hasWildcard = true
		}
	}
	if !hasWildcard && !c.readOnly {
		perm = append(perm, imap.FlagWildcard)
	}
	if c.readOnly {
		perm = nil
	}
	e.StatusResponse("*", imap.StatusResponseTypeOK, "PERMANENTFLAGS", func() { e.SP(); e.Flags(perm) }, "Flags permitted")
}

func (c *Conn) list(tag, name string) error {
	var args *ListArgs
	var err error
	if name == "LSUB" {
		args, err = c.dec.ParseLSub()
	} else {
		args, err = c.dec.ParseList()
	}
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	w := &ListWriter{c: c, lsub: name == "LSUB", status: args.Options.ReturnStatus}
	if err := c.session.List(w, args.Ref, args.Patterns, args.Options); err != nil {
		return err
	}
	if err := c.poll(false); err != nil {
		return err
	}
	return c.ok(tag, name)
}

func (c *Conn) status(tag string) error {
	name, opts, err := c.dec.ParseStatus()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if opts.HighestModSeq {
		c.condstore = true // RFC 7162 3.1.8: a CONDSTORE enabling command
	}
	data, err := c.session.Status(name, opts)
	if err != nil {
		return err
	}
	var extra []StatusItem
	if c.dec.StatusMailboxID {
		id, err := c.statusMailboxID(name)
		if err != nil {
			return err
		}
		extra = append(extra, StatusItem{Name: "MAILBOXID", Value: func(e *Encoder) { e.Special('(').Atom(id).Special(')') }})
	}
	c.enc.StatusDataWithOptions(data, opts, extra...)
	if err := c.poll(false); err != nil {
		return err
	}
	return c.ok(tag, "STATUS")
}

// appendCmd streams each message literal to the session as it arrives;
// several messages (RFC 3502 MULTIAPPEND) are appended together or not at
// all. A connection that breaks mid-command appends nothing: the
// transaction is aborted on every path but the commit.
func (c *Conn) appendCmd(tag string) error {
	mbox, err := c.dec.ParseAppendMailbox()
	if err != nil {
		return err
	}
	m, err := c.dec.NextAppend(true)
	if err != nil {
		return err
	}
	limit := int64(c.session.AppendLimit())
	tx, failed := c.session.BeginAppend(mbox)
	if tx != nil {
		defer tx.Abort()
	}
	for first := true; m != nil; first = false {
		c.setReadDeadline(time.Now().Add(commandTimeout))
		if m.utf8 && failed == nil && !c.rev2() && !c.enabled.Has(imap.CapUTF8Accept) {
			// RFC 6855 section 4's UTF8 data item belongs to UTF8=ACCEPT,
			// which a client must ENABLE first (section 3): before that
			// the command is in error. Its literals are still read to
			// their end below, so that none of their bytes runs as a
			// command.
			failed = badAfterLine("APPEND UTF8 needs ENABLE UTF8=ACCEPT first")
		}
		if failed != nil && !first && !m.NonSync {
			// RFC 3502 section 3: once a message failed, the server may
			// refuse the next literal instead of asking for it; the
			// command ends here, its line at the literal's header.
			return failed
		}
		// Literal limits hold per message, as for a single APPEND.
		if err := m.Accept(limit); err != nil {
			return err
		}
		body := m.Body()
		if failed == nil {
			failed = tx.Add(literalReader{limitedBody: body, size: m.Size}, m.Options)
		}
		// Whatever the session did, the literal is read to its end: its
		// bytes are the message, never commands.
		if err := body.Discard(); err != nil {
			return err
		}
		if err := m.End(); err != nil {
			return err
		}
		if m, err = c.dec.NextAppend(false); err != nil {
			return err
		}
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	res, err := tx.Commit()
	if err != nil {
		return err
	}
	if err := c.poll(false); err != nil {
		return err
	}
	e := c.enc
	if res != nil && len(res.UIDs) > 0 {
		e.StatusResponse(tag, imap.StatusResponseTypeOK, "APPENDUID", func() {
			e.SP()
			e.Number(res.UIDValidity)
			e.SP()
			e.NumSet(res.UIDs)
		}, "APPEND completed")
		return e.Err()
	}
	return c.ok(tag, "APPEND")
}

func (c *Conn) idle(tag string) error {
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	c.enc.Continuation("idling")
	if err := c.flush(); err != nil {
		return err
	}
	w := &UpdateWriter{c: c, flush: true}
	p := &pusher{c: c}
	var stop func() error
	err := p.begin(func(wake func()) (func() error, error) {
		update, st, err := c.session.Idle(w, wake)
		stop = st
		return update, err
	})
	if err != nil {
		return err
	}
	c.setReadDeadline(time.Now().Add(idleTimeout))
	c.waitForInput()
	line, readErr := c.readLine(64)
	idleErr := p.end()
	stopErr := stop()
	if c.bye.Load() != nil {
		return errConnClosed
	}
	if idleErr != nil {
		return idleErr
	}
	if readErr != nil {
		return readErr
	}
	if stopErr != nil {
		return stopErr
	}
	if !strings.EqualFold(strings.TrimSpace(line), "DONE") {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Expected DONE to end IDLE"}
	}
	return c.ok(tag, "IDLE")
}

// waitForCommand waits until the client sends something. Under NOTIFY the
// session writes its notifications meanwhile, as in IDLE (RFC 5465 section
// 3.1: the client listens "even when no command is in progress").
func (c *Conn) waitForCommand() error {
	n, ok := c.session.(Notifier)
	if !c.notifying || !ok {
		c.releaseWriter()
		c.waitForInput()
		c.acquireWriter()
		return nil
	}
	p := &pusher{c: c}
	var stop func() error
	p.begin(func(wake func()) (func() error, error) {
		update, st := n.Listen(&UpdateWriter{c: c, flush: true}, wake)
		stop = st
		return update, nil
	})
	if c.compressed {
		c.br.Peek(1) // the inflater keeps its reader (waitForInput)
	} else {
		c.waitForInput()
	}
	err := p.end()
	if serr := stop(); err == nil {
		err = serr
	}
	return err
}

// pusher writes a session's updates while the connection's goroutine waits
// for the client (IDLE, or between commands under NOTIFY). No goroutine
// waits meanwhile: the session's wake starts a short-lived writer, with a
// writer buffer of its own for the time it writes; mu makes writers take
// turns, so one writes at a time.
type pusher struct {
	c       *Conn
	mu      sync.Mutex
	stopped bool
	err     error // a write failed: the connection is broken
	waking  atomic.Bool
	update  func() error
}

// begin runs setup (which writes what is pending and arranges for wake to
// be called) and hands the writer buffer back until a wake needs one.
func (p *pusher) begin(setup func(wake func()) (update func() error, err error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	update, err := setup(p.wake)
	if err != nil {
		return err
	}
	p.update = update
	p.c.releaseWriter()
	return nil
}

func (p *pusher) wake() {
	if p.waking.Swap(true) {
		return // a writer is on its way
	}
	go func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.waking.Store(false)
		if p.stopped || p.err != nil || p.update == nil {
			return
		}
		p.c.acquireWriter()
		err := p.update()
		p.c.releaseWriter()
		if err != nil {
			p.err = err
			p.c.nc.SetReadDeadline(time.Now()) // wake the reader
		}
	}()
}

// end stops the writers, gives the connection its writer buffer back and
// returns a write error, if any.
func (p *pusher) end() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.c.acquireWriter()
	return p.err
}

func (c *Conn) search(tag string, kind NumKind) (err error) {
	args, err := c.dec.ParseSearch(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if args.Options.ReturnSave {
		defer func() { c.resetSavedOnNo(err) }()
	}
	if args.Charset != "" && c.enabled.Has(imap.CapUTF8Accept) {
		// RFC 6855 section 3 (erratum 4029): after ENABLE UTF8=ACCEPT a
		// SEARCH names no charset; the server SHOULD answer BAD.
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No CHARSET in SEARCH after ENABLE UTF8=ACCEPT"}
	}
	if args.Charset != "" && args.Charset != "UTF-8" && args.Charset != "US-ASCII" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeBadCharset, Text: "Only UTF-8 and US-ASCII are supported"}
	}
	// New messages are announced first (EXISTS), so that the result, in
	// the client's numbering, covers them; a SEARCH result never names a
	// message before its EXISTS.
	if err := c.poll(false); err != nil {
		return err
	}
	if UsesModSeq(args.Criteria) {
		c.condstore = true // RFC 7162 3.1.8: a CONDSTORE enabling command
	}
	sc, _ := c.session.(SearchContexts)
	update := args.Context.Update && sc != nil
	if update && sc.Tracking(tag) {
		// RFC 5267 4.3: UPDATE with a tag already in use by a search
		// that used UPDATE "SHALL result in the server rejecting the
		// searching command with a BAD response".
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Tag reuse: a search context has this tag"}
	}
	var data *imap.SearchData
	tracked := false
	if update {
		data, tracked, err = sc.SearchUpdating(tag, kind, args.Criteria, args.Options)
	} else {
		data, err = c.session.Search(kind, args.Criteria, args.Options)
	}
	if err != nil {
		return err
	}
	if update && !tracked {
		// RFC 5267 4.3.1: the search is answered; only the updates are
		// refused.
		c.enc.StatusResponse("*", imap.StatusResponseTypeNo, "NOUPDATE", func() { c.enc.SP().String(tag) },
			"Search results of these criteria are not kept up to date")
	}
	o := args.Options
	saveOnly := o.ReturnSave && !o.ReturnMin && !o.ReturnMax && !o.ReturnCount && !o.ReturnAll &&
		!args.Context.Update && args.Context.Partial == nil
	if args.Extended || c.rev2() {
		if !saveOnly { // RFC 5182 section 2.4: RETURN (SAVE) alone answers no ESEARCH
			c.enc.ESearchPartial(tag, kind == NumKindUID, data, args.Options, args.Context.Partial)
		}
	} else {
		var nums []uint32
		if data.All != nil {
			switch set := data.All.(type) {
			case imap.SeqSet:
				nums, _ = set.Nums()
			case imap.UIDSet:
				uids, _ := set.Nums()
				for _, u := range uids {
					nums = append(nums, uint32(u))
				}
			}
		}
		c.enc.Search(nums, data.ModSeq)
	}
	return c.ok(tag, "SEARCH")
}

func (c *Conn) fetch(tag string, kind NumKind) error {
	args, err := c.dec.ParseFetch(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if args.Vanished && (kind != NumKindUID || args.Options.ChangedSince == 0 || !c.QResync()) {
		// RFC 7162 3.2.6: only UID FETCH with CHANGEDSINCE, QRESYNC enabled.
		return badAfterLine("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")
	}
	if args.Options.ModSeq {
		c.condstore = true
	}
	w := &FetchWriter{c: c, rfc822: map[*imap.FetchItemBodySection]string{}, ext: args.Ext}
	for i, n := range args.RFC822 {
		w.rfc822[args.Options.BodySection[i]] = n
	}
	if args.Vanished {
		if err := c.fetchVanished(args.NumSet, args.Options.ChangedSince); err != nil {
			return err
		}
	}
	if err := c.session.Fetch(w, args.NumSet, args.Options); err != nil {
		if c.enc.Err() != nil {
			return c.enc.Err() // a response was cut: the stream is broken
		}
		return err
	}
	if err := c.poll(false); err != nil {
		return err
	}
	return c.ok(tag, "FETCH")
}

func (c *Conn) store(tag string, kind NumKind) error {
	args, err := c.dec.ParseStore(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if c.readOnly {
		return readOnlyErr()
	}
	if args.Conditional {
		c.condstore = true // RFC 7162 3.1.8: a CONDSTORE enabling command
	}
	w := &FetchWriter{c: c, conditional: args.Conditional}
	if err := c.session.Store(w, args.NumSet, args.Flags, args.Options); err != nil {
		if c.enc.Err() != nil {
			return c.enc.Err()
		}
		return err
	}
	if err := c.poll(false); err != nil {
		return err
	}
	return c.storeCompleted(tag, w)
}

func (c *Conn) copyOrMove(tag, name string, kind NumKind) error {
	set, dest, err := c.dec.ParseCopy(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if name == "MOVE" {
		if c.readOnly {
			return readOnlyErr()
		}
		if err := c.session.Move(&MoveWriter{c: c}, set, dest); err != nil {
			return err
		}
		// MOVE expunges from the source as EXPUNGE does (RFC 6851 section
		// 3.3), and ends as EXPUNGE does: with [HIGHESTMODSEQ] once
		// CONDSTORE is on (RFC 7162 3.2.7).
		return c.expungeCompleted(tag, name)
	}
	data, err := c.session.Copy(set, dest)
	if err != nil {
		return err
	}
	if err := c.poll(false); err != nil {
		return err
	}
	if data != nil && data.DestUIDs != nil {
		c.writeCopyUID(tag, data, "COPY completed")
		return c.enc.Err()
	}
	return c.ok(tag, name)
}

// writeCopyUID writes an OK with the COPYUID code (RFC 4315).
func (c *Conn) writeCopyUID(tag string, data *imap.CopyData, text string) {
	e := c.enc
	e.StatusResponse(tag, imap.StatusResponseTypeOK, "COPYUID", func() {
		e.SP()
		e.Number(data.UIDValidity)
		e.SP()
		e.NumSet(data.SourceUIDs)
		e.SP()
		e.NumSet(data.DestUIDs)
	}, text)
}
