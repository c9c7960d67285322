// Package fakemx is a "remote" mail server on loopback for tests of the
// outbound queue: it records what it receives and answers as scripted.
package fakemx

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message received.
type Message struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

// Server is the fake MX.
type Server struct {
	Addr string

	mu        sync.Mutex
	received  []Message
	dataTries []time.Time
	// DataReplies answers DATA attempts in order (nil = accept); once used
	// up, DATA is accepted.
	DataReplies []*smtp.SMTPError
	// RcptReply, when set, refuses every RCPT with it.
	RcptReply *smtp.SMTPError
	// RcptReplies refuses RCPT of the addresses it names.
	RcptReplies map[string]*smtp.SMTPError
	// StallConnections makes the first n connections hang after connecting.
	StallConnections int
	conns            int

	srv *smtp.Server
	ln  net.Listener
}

// Start serves on a random loopback port.
func Start() (*Server, error) {
	return StartOn("127.0.0.1:0", nil)
}

// StartOn serves on addr (another loopback address, say, on the port of
// another fake MX: the runner dials every MX on one port), offering
// STARTTLS with tlsConfig when it is set.
func StartOn(addr string, tlsConfig *tls.Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String()}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "mx.remote.example"
	s.srv.AllowInsecureAuth = true
	s.srv.TLSConfig = tlsConfig
	s.ln = &stallListener{Listener: ln, s: s}
	go s.srv.Serve(s.ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Received returns the messages received so far.
func (s *Server) Received() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.received...)
}

// Connections returns how many connections were accepted (stalled included).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// DataTries returns when each DATA attempt happened.
func (s *Server) DataTries() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.dataTries...)
}

// Set changes the script under the lock.
func (s *Server) Set(f func(s *Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

type stallListener struct {
	net.Listener
	s *Server
}

func (l *stallListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		l.s.conns++
		stall := l.s.conns <= l.s.StallConnections
		l.s.mu.Unlock()
		if stall {
			go func() { time.Sleep(time.Minute); c.Close() }() // say nothing
			continue
		}
		return c, nil
	}
}

func (s *Server) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

type session struct {
	s    *Server
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	if x.s.RcptReply != nil {
		return x.s.RcptReply
	}
	if reply := x.s.RcptReplies[to]; reply != nil {
		return reply
	}
	x.to = append(x.to, to)
	return nil
}
func (x *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	x.s.dataTries = append(x.s.dataTries, time.Now())
	if len(x.s.DataReplies) > 0 {
		reply := x.s.DataReplies[0]
		x.s.DataReplies = x.s.DataReplies[1:]
		if reply != nil {
			return reply
		}
	}
	x.s.received = append(x.s.received, Message{From: x.from, To: x.to, Data: data, At: time.Now()})
	return nil
}
