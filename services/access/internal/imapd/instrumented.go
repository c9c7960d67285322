package imapd

import (
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"time"

	"github.com/emersion/go-imap/v2"
)

// instrumented wraps a session: it counts and times every command for the
// metrics, and forgets the connection when the library closes the session.
type instrumented struct{ *session }

var _ imapconn.Session = (*instrumented)(nil)

func (s *instrumented) observe(name string, start time.Time, err error) {
	if o := s.srv.cfg.Observer; o != nil {
		o.Command(name, err == nil, time.Since(start))
	}
}

func (s *instrumented) Close() error {
	s.srv.mu.Lock()
	delete(s.srv.conns, s.conn)
	s.srv.mu.Unlock()
	return s.session.Close()
}

func (s *instrumented) Login(u, p string) (err error) {
	defer func(t time.Time) { s.observe("LOGIN", t, err) }(time.Now())
	return s.session.Login(u, p)
}

func (s *instrumented) Select(name string, o *imap.SelectOptions) (d *imap.SelectData, err error) {
	defer func(t time.Time) { s.observe("SELECT", t, err) }(time.Now())
	return s.session.Select(name, o)
}

func (s *instrumented) Create(name string, o *imap.CreateOptions) (err error) {
	defer func(t time.Time) { s.observe("CREATE", t, err) }(time.Now())
	return s.session.Create(name, o)
}

func (s *instrumented) Delete(name string) (err error) {
	defer func(t time.Time) { s.observe("DELETE", t, err) }(time.Now())
	return s.session.Delete(name)
}

func (s *instrumented) Rename(a, b string, o *imap.RenameOptions) (err error) {
	defer func(t time.Time) { s.observe("RENAME", t, err) }(time.Now())
	return s.session.Rename(a, b, o)
}

func (s *instrumented) Subscribe(name string) (err error) {
	defer func(t time.Time) { s.observe("SUBSCRIBE", t, err) }(time.Now())
	return s.session.Subscribe(name)
}

func (s *instrumented) Unsubscribe(name string) (err error) {
	defer func(t time.Time) { s.observe("UNSUBSCRIBE", t, err) }(time.Now())
	return s.session.Unsubscribe(name)
}

func (s *instrumented) List(w *imapconn.ListWriter, ref string, patterns []string, o *imap.ListOptions) (err error) {
	defer func(t time.Time) { s.observe("LIST", t, err) }(time.Now())
	return s.session.List(w, ref, patterns, o)
}

func (s *instrumented) Status(name string, o *imap.StatusOptions) (d *imap.StatusData, err error) {
	defer func(t time.Time) { s.observe("STATUS", t, err) }(time.Now())
	return s.session.Status(name, o)
}

func (s *instrumented) BeginAppend(name string) (tx imapconn.AppendTx, err error) {
	defer func(t time.Time) { s.observe("APPEND", t, err) }(time.Now())
	return s.session.BeginAppend(name)
}

func (s *instrumented) Unselect() (err error) {
	defer func(t time.Time) { s.observe("UNSELECT", t, err) }(time.Now())
	return s.session.Unselect()
}

func (s *instrumented) Expunge(w *imapconn.ExpungeWriter, uids *imap.UIDSet) (err error) {
	defer func(t time.Time) { s.observe("EXPUNGE", t, err) }(time.Now())
	return s.session.Expunge(w, uids)
}

func (s *instrumented) SearchUpdating(tag string, k imapconn.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (d *imap.SearchData, tracked bool, err error) {
	defer func(t time.Time) { s.observe("SEARCH", t, err) }(time.Now())
	return s.session.SearchUpdating(tag, k, c, o)
}

func (s *instrumented) Search(k imapconn.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (d *imap.SearchData, err error) {
	defer func(t time.Time) { s.observe("SEARCH", t, err) }(time.Now())
	return s.session.Search(k, c, o)
}

func (s *instrumented) Fetch(w *imapconn.FetchWriter, n imap.NumSet, o *imap.FetchOptions) (err error) {
	defer func(t time.Time) { s.observe("FETCH", t, err) }(time.Now())
	return s.session.Fetch(w, n, o)
}

func (s *instrumented) Store(w *imapconn.FetchWriter, n imap.NumSet, f *imap.StoreFlags, o *imap.StoreOptions) (err error) {
	defer func(t time.Time) { s.observe("STORE", t, err) }(time.Now())
	return s.session.Store(w, n, f, o)
}

func (s *instrumented) Copy(n imap.NumSet, dest string) (d *imap.CopyData, err error) {
	defer func(t time.Time) { s.observe("COPY", t, err) }(time.Now())
	return s.session.Copy(n, dest)
}

func (s *instrumented) Move(w *imapconn.MoveWriter, n imap.NumSet, dest string) (err error) {
	defer func(t time.Time) { s.observe("MOVE", t, err) }(time.Now())
	return s.session.Move(w, n, dest)
}

func (s *instrumented) Idle(w *imapconn.UpdateWriter, wake func()) (update, stop func() error, err error) {
	start := time.Now()
	update, end, err := s.session.Idle(w, wake)
	if err != nil {
		s.observe("IDLE", start, err)
		return nil, nil, err
	}
	return update, func() (err error) {
		defer func() { s.observe("IDLE", start, err) }()
		return end()
	}, nil
}
