package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/history"
)

// The clients of TestHistoryUnderFaults. Each records every request it makes
// and the answer in the history; none retries a request (a retry would be a
// new op), so that the history says exactly what the cluster was asked.

// cmdTimeout bounds one request: past it the client hangs up and the
// request's fate is unknown.
const cmdTimeout = 30 * time.Second

type historyAccount struct {
	idx        int
	name       string // the account's name in the history
	address    string
	password   string
	id         string
	mailboxIDs map[string]string
}

type historyRun struct {
	c        *cluster.Cluster
	h        *history.History
	seed     uint64
	accounts []*historyAccount
	// storage has one connection per storage process: deliveries and
	// snapshots pick one at random, as inbound pods would.
	storage []*grpc.ClientConn
	msgs    atomic.Int64
}

func (r *historyRun) dialStorage() error {
	for _, p := range r.c.Storage {
		adminTLS, err := r.c.PKI.ClientTLS("admin")
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(credentials.NewTLS(adminTLS)),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
		if err != nil {
			return err
		}
		r.storage = append(r.storage, conn)
	}
	return nil
}

func (r *historyRun) close() {
	for _, c := range r.storage {
		c.Close()
	}
}

// newMessage draws the next message to send.
func (r *historyRun) newMessage(to string, rng *rand.Rand) (token string, body []byte) {
	token = history.Token(r.seed, r.msgs.Add(1))
	return token, history.Body(token, to, rng)
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func jitter(rng *rand.Rand, from, to time.Duration) time.Duration {
	return from + time.Duration(rng.Int64N(int64(to-from)+1))
}

// imapSession is one IMAP connection of a client.
type imapSession struct {
	r        *historyRun
	a        *historyAccount
	client   string
	c        *imapclient.Client
	mailbox  string // selected, or ""
	validity uint32
	view     []uint32 // the UIDs of the last FETCH of the selected mailbox
}

// imapOutcome classifies an IMAP command's error. NO and BAD are definite
// refusals, except NO [UNAVAILABLE]: the access tier answers it when a
// storage call failed, which may have been after the change committed.
// Anything else (a dropped connection, a timeout, BYE) leaves the command's
// fate unknown and the connection unusable.
func imapOutcome(err error) (history.Outcome, bool) {
	if err == nil {
		return history.OK, true
	}
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type != imap.StatusResponseTypeBye {
		if ie.Code == imap.ResponseCodeUnavailable {
			return history.Unknown, true
		}
		return history.Failed, true
	}
	return history.Unknown, false
}

// do runs one command; past cmdTimeout it closes the connection, which
// fails the command.
func (s *imapSession) do(fn func() error) error {
	timer := time.AfterFunc(cmdTimeout, func() { s.c.Close() })
	defer timer.Stop()
	return fn()
}

func (r *historyRun) dialIMAP(a *historyAccount, client string, pod int) (*imapSession, error) {
	c, err := imapclient.DialTLS(r.c.Access[pod].IMAPS, &imapclient.Options{
		TLSConfig: &tls.Config{InsecureSkipVerify: true},
		Dialer:    &net.Dialer{Timeout: 5 * time.Second},
	})
	if err != nil {
		return nil, err
	}
	s := &imapSession{r: r, a: a, client: fmt.Sprintf("%s@access-%d", client, pod), c: c}
	if err := s.do(func() error { return c.Login(a.address, a.password).Wait() }); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// end records the end of op and says whether the session can go on.
func (s *imapSession) end(op *history.Op, err error) (history.Outcome, bool) {
	out, alive := imapOutcome(err)
	s.r.h.End(op, out, err)
	return out, alive
}

func (s *imapSession) begin(op *history.Op) *history.Op {
	op.Client, op.Account = s.client, s.a.name
	if op.Mailbox == "" {
		op.Mailbox = s.mailbox
	}
	return s.r.h.Begin(op)
}

func imapFlags(flags []string) []imap.Flag {
	var out []imap.Flag
	for _, f := range flags {
		out = append(out, imap.Flag(f))
	}
	return out
}

func flagStrings(flags []imap.Flag) []string {
	out := []string{}
	for _, f := range storedFlags(flags) {
		out = append(out, string(f))
	}
	return out
}

func uidSet(uids []uint32) imap.UIDSet {
	var s imap.UIDSet
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

func uidsOf(set imap.NumSet) []uint32 {
	us, ok := set.(imap.UIDSet)
	if !ok {
		return nil
	}
	nums, _ := us.Nums()
	var out []uint32
	for _, u := range nums {
		out = append(out, uint32(u))
	}
	return out
}

// imapClient is one IMAP client of an account: it keeps a session (on a
// random access pod, again after every lost connection) and draws its
// actions from its own seeded source.
func (r *historyRun) imapClient(ctx context.Context, a *historyAccount, k int) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(1000+10*a.idx+k)))
	name := fmt.Sprintf("%s.imap%d", a.name, k)
	var s *imapSession
	defer func() {
		if s != nil {
			s.c.Close()
		}
	}()
	for ctx.Err() == nil {
		if s == nil {
			var err error
			if s, err = r.dialIMAP(a, name, rng.IntN(len(r.c.Access))); err != nil {
				pause(ctx, jitter(rng, 100*time.Millisecond, 500*time.Millisecond))
				continue
			}
		}
		out, alive := s.step(rng)
		switch {
		case !alive:
			s.c.Close()
			s = nil
		case out == history.Unknown:
			// NO [UNAVAILABLE]: back off, and now and then try the other
			// pod, as a client would.
			pause(ctx, jitter(rng, 200*time.Millisecond, 600*time.Millisecond))
			if rng.IntN(2) == 0 {
				s.c.Close()
				s = nil
			}
		}
		pause(ctx, jitter(rng, 5*time.Millisecond, 40*time.Millisecond))
	}
}

// step runs one action.
func (s *imapSession) step(rng *rand.Rand) (history.Outcome, bool) {
	act := history.NextAction(rng, len(s.view))
	if s.mailbox == "" {
		act = history.ActSelect
	}
	switch act {
	case history.ActSelect:
		return s.selectMailbox(history.Mailboxes[rng.IntN(len(history.Mailboxes))])
	case history.ActFetch:
		return s.fetchView()
	case history.ActRead:
		return s.read(rng)
	case history.ActAppend:
		return s.append(rng)
	case history.ActStore:
		mode, flags := history.StoreFlags(rng)
		return s.store(history.PickUIDs(rng, s.view), mode, flags)
	case history.ActCopy, history.ActMove:
		var dest []string
		for _, m := range history.Mailboxes {
			if m != s.mailbox {
				dest = append(dest, m)
			}
		}
		return s.copyMove(history.PickUIDs(rng, s.view), dest[rng.IntN(len(dest))], act == history.ActMove)
	case history.ActExpunge:
		uids := history.PickUIDs(rng, s.view)
		if out, alive := s.store(uids, history.StoreAdd, []string{`\Deleted`}); out != history.OK {
			return out, alive
		}
		return s.expunge(uids)
	}
	return history.OK, true
}

// selectMailbox is not recorded: it changes nothing. The view it starts
// with is (a FETCH).
func (s *imapSession) selectMailbox(name string) (history.Outcome, bool) {
	var data *imap.SelectData
	err := s.do(func() (err error) { data, err = s.c.Select(name, nil).Wait(); return err })
	if out, alive := imapOutcome(err); out != history.OK {
		s.mailbox, s.view = "", nil
		return out, alive
	}
	s.mailbox, s.validity, s.view = name, data.UIDValidity, nil
	return s.fetchView()
}

// fetchView records the session's view of the selected mailbox.
func (s *imapSession) fetchView() (history.Outcome, bool) {
	op := s.begin(&history.Op{Kind: history.Fetch, UIDValidity: s.validity})
	var msgs []*imapclient.FetchMessageBuffer
	err := s.do(func() (err error) {
		all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
		msgs, err = s.c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
		return err
	})
	if err == nil {
		s.view = nil
		for _, m := range msgs {
			hm := history.Msg{UID: uint32(m.UID), Flags: flagStrings(m.Flags)}
			if m.Envelope != nil {
				hm.Token = history.TokenFromMessageID(m.Envelope.MessageID)
			}
			op.Msgs = append(op.Msgs, hm)
			s.view = append(s.view, hm.UID)
		}
	}
	return s.end(op, err)
}

// read fetches the bodies of a few messages (BODY.PEEK: no \Seen).
func (s *imapSession) read(rng *rand.Rand) (history.Outcome, bool) {
	uids := history.PickUIDs(rng, s.view)
	if len(uids) > 2 {
		uids = uids[:2]
	}
	if len(uids) == 0 {
		return history.OK, true
	}
	op := s.begin(&history.Op{Kind: history.Read, UIDs: uids, UIDValidity: s.validity})
	section := &imap.FetchItemBodySection{Peek: true}
	var msgs []*imapclient.FetchMessageBuffer
	err := s.do(func() (err error) {
		msgs, err = s.c.Fetch(uidSet(uids), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		return err
	})
	if err == nil {
		for _, m := range msgs {
			if body := m.FindBodySection(section); body != nil {
				op.Msgs = append(op.Msgs, history.Msg{UID: uint32(m.UID), Token: history.TokenFromBody(body), BodySum: history.Sum(body)})
			}
		}
	}
	return s.end(op, err)
}

func (s *imapSession) append(rng *rand.Rand) (history.Outcome, bool) {
	mailbox := history.Mailboxes[rng.IntN(len(history.Mailboxes))]
	token, body := s.r.newMessage(s.a.address, rng)
	flags := history.AppendFlags(rng)
	op := s.begin(&history.Op{Kind: history.Append, Mailbox: mailbox, Token: token, BodySum: history.Sum(body), Flags: flags})
	var data *imap.AppendData
	err := s.do(func() error {
		cmd := s.c.Append(mailbox, int64(len(body)), &imap.AppendOptions{Flags: imapFlags(flags)})
		if _, err := cmd.Write(body); err != nil {
			cmd.Close()
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		data, err = cmd.Wait()
		return err
	})
	if err == nil {
		op.UID, op.UIDValidity = uint32(data.UID), data.UIDValidity
	}
	return s.end(op, err)
}

func (s *imapSession) store(uids []uint32, mode history.StoreMode, flags []string) (history.Outcome, bool) {
	if len(uids) == 0 {
		return history.OK, true
	}
	op := s.begin(&history.Op{Kind: history.Store, UIDs: uids, Mode: mode, Flags: flags})
	sf := &imap.StoreFlags{Op: map[history.StoreMode]imap.StoreFlagsOp{
		history.StoreAdd: imap.StoreFlagsAdd, history.StoreRemove: imap.StoreFlagsDel, history.StoreReplace: imap.StoreFlagsSet,
	}[mode], Flags: imapFlags(flags)}
	var msgs []*imapclient.FetchMessageBuffer
	err := s.do(func() (err error) { msgs, err = s.c.Store(uidSet(uids), sf, nil).Collect(); return err })
	if err == nil {
		for _, m := range msgs {
			op.Msgs = append(op.Msgs, history.Msg{UID: uint32(m.UID), Flags: flagStrings(m.Flags)})
		}
	}
	return s.end(op, err)
}

func (s *imapSession) copyMove(uids []uint32, dest string, move bool) (history.Outcome, bool) {
	if len(uids) == 0 {
		return history.OK, true
	}
	kind := history.Copy
	if move {
		kind = history.Move
	}
	op := s.begin(&history.Op{Kind: kind, UIDs: uids, Dest: dest})
	err := s.do(func() error {
		if move {
			data, err := s.c.Move(uidSet(uids), dest).Wait()
			if err == nil {
				op.UIDValidity, op.SrcUIDs, op.DestUIDs = data.UIDValidity, uidsOf(data.SourceUIDs), uidsOf(data.DestUIDs)
			}
			return err
		}
		data, err := s.c.Copy(uidSet(uids), dest).Wait()
		if err == nil {
			op.UIDValidity, op.SrcUIDs, op.DestUIDs = data.UIDValidity, uidsOf(data.SourceUIDs), uidsOf(data.DestUIDs)
		}
		return err
	})
	out, alive := s.end(op, err)
	if out == history.OK && move {
		s.view = slices.DeleteFunc(s.view, func(u uint32) bool { return slices.Contains(op.SrcUIDs, u) })
	}
	return out, alive
}

func (s *imapSession) expunge(uids []uint32) (history.Outcome, bool) {
	op := s.begin(&history.Op{Kind: history.Expunge, UIDs: uids})
	err := s.do(func() error { return s.c.UIDExpunge(uidSet(uids)).Close() })
	out, alive := s.end(op, err)
	if out == history.OK {
		s.view = slices.DeleteFunc(s.view, func(u uint32) bool { return slices.Contains(uids, u) })
	}
	return out, alive
}

// pop3Raw is a raw POP3 client over implicit TLS that returns errors
// (pop3Dial's fails the test).
type pop3Raw struct {
	conn net.Conn
	r    *bufio.Reader
}

func (p *pop3Raw) line() (string, error) {
	p.conn.SetReadDeadline(time.Now().Add(cmdTimeout))
	l, err := p.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

func (p *pop3Raw) cmd(c string) (string, error) {
	p.conn.SetWriteDeadline(time.Now().Add(cmdTimeout))
	if _, err := fmt.Fprintf(p.conn, "%s\r\n", c); err != nil {
		return "", err
	}
	return p.line()
}

// multi reads a multi-line answer, dot-stuffing undone.
func (p *pop3Raw) multi() ([]string, error) {
	var out []string
	for {
		l, err := p.line()
		if err != nil {
			return nil, err
		}
		if l == "." {
			return out, nil
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

// pop3Client runs POP3 sessions of an account now and then: UIDL, RETR of
// a few messages, DELE of a few, then QUIT — or, one time in five, a hang-up
// before QUIT, which must delete nothing.
func (r *historyRun) pop3Client(ctx context.Context, a *historyAccount) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(2000+a.idx)))
	for ctx.Err() == nil {
		pause(ctx, jitter(rng, time.Second, 4*time.Second))
		if ctx.Err() == nil {
			r.pop3Session(a, rng)
		}
	}
}

func (r *historyRun) pop3Session(a *historyAccount, rng *rand.Rand) {
	pod := rng.IntN(len(r.c.Access))
	op := r.h.Begin(&history.Op{Client: fmt.Sprintf("%s.pop3@access-%d", a.name, pod), Kind: history.POP3, Account: a.name, Mailbox: history.Inbox})
	quitSent := false
	// Before QUIT nothing can have changed: the session failed; after it,
	// anything but +OK leaves the deletions unknown.
	fail := func(err error) {
		if quitSent {
			r.h.End(op, history.Unknown, err)
		} else {
			r.h.End(op, history.Failed, err)
		}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.c.Access[pod].POP3S, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close()
	p := &pop3Raw{conn: conn, r: bufio.NewReader(conn)}
	expect := func(l string, err error, what string) error {
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "+OK") {
			return fmt.Errorf("%s: %s", what, l)
		}
		return nil
	}
	l, err := p.line()
	if err := expect(l, err, "greeting"); err != nil {
		fail(err)
		return
	}
	for _, c := range []string{"USER " + a.address, "PASS " + a.password, "UIDL"} {
		l, err := p.cmd(c)
		if err := expect(l, err, strings.Fields(c)[0]); err != nil {
			fail(err)
			return
		}
	}
	lines, err := p.multi()
	if err != nil {
		fail(err)
		return
	}
	type entry struct {
		n   string
		uid uint32
	}
	var list []entry
	for _, l := range lines {
		n, id, _ := strings.Cut(l, " ")
		v, u, _ := strings.Cut(id, ".")
		validity, _ := strconv.ParseUint(v, 10, 32)
		uid, _ := strconv.ParseUint(u, 10, 32)
		op.UIDValidity = uint32(validity)
		list = append(list, entry{n, uint32(uid)})
	}
	for _, k := range rng.Perm(len(list))[:min(len(list), rng.IntN(3))] {
		l, err := p.cmd("RETR " + list[k].n)
		if err := expect(l, err, "RETR"); err != nil {
			fail(err)
			return
		}
		body, err := p.multi()
		if err != nil {
			fail(err)
			return
		}
		b := []byte(strings.Join(body, "\r\n") + "\r\n")
		op.Msgs = append(op.Msgs, history.Msg{UID: list[k].uid, Token: history.TokenFromBody(b), BodySum: history.Sum(b)})
	}
	if rng.IntN(10) < 7 {
		for _, k := range rng.Perm(len(list))[:min(len(list), 1+rng.IntN(3))] {
			l, err := p.cmd("DELE " + list[k].n)
			if err != nil {
				fail(err)
				return
			}
			if strings.HasPrefix(l, "+OK") {
				op.UIDs = append(op.UIDs, list[k].uid)
			}
		}
	}
	if rng.IntN(5) == 0 {
		conn.Close()
		r.h.End(op, history.Failed, errors.New("hung up before QUIT"))
		return
	}
	quitSent = true
	l, err = p.cmd("QUIT")
	if err := expect(l, err, "QUIT"); err != nil {
		fail(err)
		return
	}
	r.h.End(op, history.OK, nil)
}

// deliverer delivers messages to one or two accounts' INBOXes through the
// storage API, as the inbound tier does, on a random storage process.
func (r *historyRun) deliverer(ctx context.Context) {
	rng := rand.New(rand.NewPCG(r.seed, 3000))
	for ctx.Err() == nil {
		pause(ctx, jitter(rng, 50*time.Millisecond, 250*time.Millisecond))
		if ctx.Err() != nil {
			return
		}
		n := 1
		if rng.IntN(4) == 0 {
			n = 2
		}
		var to []*historyAccount
		for _, k := range rng.Perm(len(r.accounts))[:n] {
			to = append(to, r.accounts[k])
		}
		token, body := r.newMessage(to[0].address, rng)
		k := rng.IntN(len(r.storage))
		op := &history.Op{Client: fmt.Sprintf("deliver@storage-%d", k), Kind: history.Deliver, Mailbox: history.Inbox, Token: token, BodySum: history.Sum(body)}
		for _, a := range to {
			op.Recipients = append(op.Recipients, history.Recipient{Account: a.name})
		}
		r.h.Begin(op)
		resp, err := deliver(storagev1.NewDeliveryServiceClient(r.storage[k]), to, body)
		if err != nil {
			for i := range op.Recipients {
				op.Recipients[i].Outcome = history.Unknown
			}
			r.h.End(op, history.Unknown, err)
			continue
		}
		for _, res := range resp.Results {
			for i, a := range to {
				if !strings.EqualFold(res.Recipient, a.address) {
					continue
				}
				rc := &op.Recipients[i]
				switch res.Status {
				case storagev1.RecipientResult_STATUS_DELIVERED:
					rc.Outcome, rc.UID = history.OK, res.Uid
				case storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE:
					rc.Outcome = history.Unknown
				default:
					rc.Outcome = history.Failed
				}
			}
		}
		for i := range op.Recipients {
			if op.Recipients[i].Outcome == history.Pending {
				op.Recipients[i].Outcome = history.Unknown // no answer for it
			}
		}
		r.h.End(op, history.OK, nil)
	}
}

func deliver(c storagev1.DeliveryServiceClient, to []*historyAccount, body []byte) (*storagev1.DeliverResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	stream, err := c.Deliver(ctx)
	if err != nil {
		return nil, err
	}
	var rcpts []string
	for _, a := range to {
		rcpts = append(rcpts, a.address)
	}
	if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{Recipients: rcpts}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	for len(body) > 0 {
		n := min(len(body), 64<<10)
		if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body[:n]}}}); err != nil {
			_, err = stream.CloseAndRecv()
			return nil, err
		}
		body = body[n:]
	}
	return stream.CloseAndRecv()
}

// snapshotter takes storage snapshots of an account's mailboxes: the only
// place this history sees MODSEQs (its IMAP clients do not use CONDSTORE;
// the stress tool, test/stress, checks MODSEQ over IMAP).
func (r *historyRun) snapshotter(ctx context.Context, a *historyAccount) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(4000+a.idx)))
	for ctx.Err() == nil {
		pause(ctx, jitter(rng, 150*time.Millisecond, 400*time.Millisecond))
		if ctx.Err() != nil {
			return
		}
		mailbox := history.Mailboxes[rng.IntN(len(history.Mailboxes))]
		k := rng.IntN(len(r.storage))
		op := r.h.Begin(&history.Op{Client: fmt.Sprintf("%s.list@storage-%d", a.name, k), Kind: history.List, Account: a.name, Mailbox: mailbox})
		mb, msgs, err := listMailbox(storagev1.NewMessageServiceClient(r.storage[k]), a.id, a.mailboxIDs[mailbox])
		if err != nil {
			r.h.End(op, history.Failed, err) // a read: it changed nothing
			continue
		}
		op.UIDValidity, op.UIDNext, op.HighestModSeq, op.Msgs = mb.UidValidity, mb.UidNext, mb.HighestModseq, msgs
		r.h.End(op, history.OK, nil)
	}
}

// listMailbox reads every index entry of a mailbox at one etcd revision.
func listMailbox(c storagev1.MessageServiceClient, account, mailbox string) (*storagev1.Mailbox, []history.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	req := &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mailbox, Limit: 5000, IncludeEnvelope: true}
	var mb *storagev1.Mailbox
	var out []history.Msg
	for {
		resp, err := c.ListMessages(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		if mb == nil {
			mb = resp.Mailbox
		}
		for _, m := range resp.Messages {
			out = append(out, history.Msg{UID: m.Uid, Flags: append([]string{}, m.Flags...), ModSeq: m.Modseq,
				Token: history.TokenFromMessageID(m.GetEnvelope().GetMessageId())})
		}
		if !resp.More {
			return mb, out, nil
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

// readBody streams a body through the storage API.
func readBody(c storagev1.MessageServiceClient, account, mailbox string, uid uint32) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	stream, err := c.GetMessageBody(ctx, &storagev1.GetMessageBodyRequest{AccountId: account, MailboxId: mailbox, Uid: uid})
	if err != nil {
		return nil, err
	}
	var body []byte
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return nil, err
		}
		body = append(body, resp.GetChunk().GetData()...)
	}
}
