// Package queue runs the outbound queue: it leases due items from the
// storage tier, delivers them to the recipients' servers over SMTP, and
// records per-recipient outcomes. Any number of runners may run (one per
// submission pod): a lease makes an item theirs alone; a runner that dies
// stops renewing, and another picks the item up when the lease expires.
//
// Delivery is at least once: a runner that dies after the remote server
// said 250 but before recording it makes another runner send it again, as
// with every MTA.
package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/dnsresolver"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Config tunes a runner.
type Config struct {
	// Hostname is sent in EHLO and names the reporting MTA in DSNs.
	Hostname string
	// Workers is how many items one runner delivers at once.
	Workers int
	// LeaseTTL is how long an item stays ours without renewal.
	LeaseTTL time.Duration
	// PollInterval is the pause when nothing is due.
	PollInterval time.Duration
	// RemotePort is the SMTP port of remote servers (25).
	RemotePort int
	// Routes maps a domain (or "*") to a fixed next hop "host:port"; other
	// domains are looked up in DNS (MX, then A/AAAA).
	Routes map[string]string
	// Schedule is the back-off between attempts; the last entry repeats.
	Schedule []time.Duration
	// ConnectTimeout bounds one connection attempt; CommandTimeout one
	// SMTP exchange.
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	Observer       Observer
	Logger         *slog.Logger
}

// Observer is told about attempts, for metrics.
type Observer interface {
	Attempt(result string) // delivered, deferred, failed
	Bounced()
}

// Runner delivers queued mail.
type Runner struct {
	cfg      Config
	store    *storeclient.Client
	resolver *dnsresolver.Resolver
}

// New returns a runner.
func New(store *storeclient.Client, resolver *dnsresolver.Resolver, cfg Config) *Runner {
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.RemotePort == 0 {
		cfg.RemotePort = 25
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	return &Runner{cfg: cfg, store: store, resolver: resolver}
}

// Run works the queue until ctx ends; items in flight then finish.
func (r *Runner) Run(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := r.round(ctx)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("queue round failed", "err", err)
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(r.cfg.PollInterval):
			}
		}
	}
}

// round leases up to Workers items and delivers them; it returns how many.
func (r *Runner) round(ctx context.Context) (int, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	lease, err := r.store.Queue.Lease(lctx, &storagev1.LeaseRequest{MaxItems: uint32(r.cfg.Workers), TtlSeconds: uint32(r.cfg.LeaseTTL / time.Second)})
	cancel()
	if err != nil || len(lease.Items) == 0 {
		return 0, err
	}
	// Keep the lease alive while we work (a dead runner stops doing this).
	renewCtx, stopRenew := context.WithCancel(context.Background())
	go func() {
		t := time.NewTicker(r.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				c, cancel := context.WithTimeout(renewCtx, r.cfg.LeaseTTL/3)
				r.store.Queue.RenewLease(c, &storagev1.RenewLeaseRequest{LeaseId: lease.LeaseId})
				cancel()
			}
		}
	}()
	var wg sync.WaitGroup
	for _, item := range lease.Items {
		wg.Add(1)
		go func(item *storagev1.QueueItem) {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					r.cfg.Logger.Error("queue item panicked", "queue_id", item.Id, "panic", p)
				}
			}()
			r.process(context.WithoutCancel(ctx), lease.LeaseId, item)
		}(item)
	}
	wg.Wait()
	stopRenew()
	return len(lease.Items), nil
}

// process makes one delivery attempt for an item's pending recipients.
func (r *Runner) process(ctx context.Context, leaseID int64, item *storagev1.QueueItem) {
	log := r.cfg.Logger.With("queue_id", item.Id)
	var pending []*storagev1.QueueRecipient
	for _, rc := range item.Recipients {
		if rc.State == storagev1.QueueRecipient_STATE_PENDING {
			pending = append(pending, rc)
		}
	}
	var outcomes []*storagev1.RecipientOutcome
	var lastErr string
	if item.ExpiresAt != nil && time.Now().After(item.ExpiresAt.AsTime()) {
		for _, rc := range pending {
			outcomes = append(outcomes, &storagev1.RecipientOutcome{Address: rc.Address, Outcome: storagev1.RecipientOutcome_OUTCOME_FAILED,
				Result: "expired after " + time.Since(item.CreatedAt.AsTime()).Round(time.Minute).String() + "; last: " + rc.LastResult})
		}
	} else {
		outcomes = r.attempt(ctx, item, pending)
		for _, o := range outcomes {
			if o.Outcome != storagev1.RecipientOutcome_OUTCOME_DELIVERED {
				lastErr = o.Result
			}
			if r.cfg.Observer != nil {
				r.cfg.Observer.Attempt(strings.ToLower(strings.TrimPrefix(o.Outcome.String(), "OUTCOME_")))
			}
		}
	}
	next := time.Now().Add(r.cfg.Schedule[min(int(item.Attempts), len(r.cfg.Schedule)-1)])
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := r.store.Queue.RecordAttempt(rctx, &storagev1.RecordAttemptRequest{Id: item.Id, LeaseId: leaseID,
		Outcomes: outcomes, NextAttemptAt: timestamppb.New(next), Error: lastErr})
	if err != nil {
		log.Warn("recording a delivery attempt failed; the item will be retried", "err", err)
		return
	}
	for _, o := range outcomes {
		log.Info("delivery attempt", "recipient", o.Address, "outcome", strings.TrimPrefix(o.Outcome.String(), "OUTCOME_"), "result", o.Result)
	}
	if resp.Removed {
		return
	}
	var failed []*storagev1.QueueRecipient
	for _, rc := range resp.Item.Recipients {
		if rc.State == storagev1.QueueRecipient_STATE_FAILED {
			failed = append(failed, rc)
		}
	}
	if len(failed) == 0 {
		return
	}
	// A DSN is owed for the failed recipients (RFC 3464), then Bounce.
	if err := r.sendDSN(rctx, resp.Item, failed); err != nil {
		log.Warn("sending a DSN failed; will retry", "err", err)
		return
	}
	var addrs []string
	for _, f := range failed {
		addrs = append(addrs, f.Address)
	}
	if _, err := r.store.Queue.Bounce(rctx, &storagev1.BounceRequest{Id: item.Id, LeaseId: leaseID, Recipients: addrs}); err != nil {
		log.Warn("recording the bounce failed; the DSN may be sent twice", "err", err)
		return
	}
	if r.cfg.Observer != nil {
		r.cfg.Observer.Bounced()
	}
	log.Info("bounced", "recipients", len(addrs))
}

// attempt tries to deliver to the pending recipients once: into local
// mailboxes through the storage tier for a local item, else domain by
// domain over SMTP.
func (r *Runner) attempt(ctx context.Context, item *storagev1.QueueItem, pending []*storagev1.QueueRecipient) []*storagev1.RecipientOutcome {
	if item.Local {
		var rcpts []string
		for _, rc := range pending {
			rcpts = append(rcpts, rc.Address)
		}
		return r.deliverLocal(ctx, item, rcpts)
	}
	byDomain := map[string][]string{}
	for _, rc := range pending {
		d := rc.Address[strings.LastIndexByte(rc.Address, '@')+1:]
		byDomain[d] = append(byDomain[d], rc.Address)
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	var outcomes []*storagev1.RecipientOutcome
	for _, d := range domains {
		outcomes = append(outcomes, r.deliverDomain(ctx, item, d, byDomain[d])...)
	}
	return outcomes
}

// hosts returns the next hops for domain, in order of preference.
func (r *Runner) hosts(ctx context.Context, domain string) ([]string, error) {
	if hop, ok := r.cfg.Routes[domain]; ok {
		return []string{hop}, nil
	}
	if hop, ok := r.cfg.Routes["*"]; ok {
		return []string{hop}, nil
	}
	port := fmt.Sprint(r.cfg.RemotePort)
	mxs, err := r.resolver.LookupMX(ctx, domain)
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		return nil, err
	}
	if len(mxs) == 0 {
		// RFC 5321 5.1: no MX, the domain itself is the host.
		return []string{net.JoinHostPort(domain, port)}, nil
	}
	sort.Slice(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var out []string
	for _, mx := range mxs {
		if mx.Host == "." {
			return nil, errNullMX // RFC 7505: the domain takes no mail
		}
		out = append(out, net.JoinHostPort(strings.TrimSuffix(mx.Host, "."), port))
	}
	return out, nil
}

var errNullMX = errors.New("domain does not accept mail (null MX)")

// deliverDomain tries the domain's hosts in turn and returns an outcome per
// recipient.
func (r *Runner) deliverDomain(ctx context.Context, item *storagev1.QueueItem, domain string, rcpts []string) []*storagev1.RecipientOutcome {
	all := func(o storagev1.RecipientOutcome_Outcome, result string) []*storagev1.RecipientOutcome {
		var out []*storagev1.RecipientOutcome
		for _, a := range rcpts {
			out = append(out, &storagev1.RecipientOutcome{Address: a, Outcome: o, Result: result})
		}
		return out
	}
	hosts, err := r.hosts(ctx, domain)
	if errors.Is(err, errNullMX) {
		return all(storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.1.10 "+err.Error())
	}
	if err != nil {
		return all(storagev1.RecipientOutcome_OUTCOME_DEFERRED, "DNS lookup failed: "+err.Error())
	}
	var lastErr error
	for _, host := range hosts {
		addrs, err := r.addresses(ctx, host)
		if err != nil {
			lastErr = err
			continue
		}
		for _, addr := range addrs {
			out, err := r.deliverHost(ctx, item, host, addr, rcpts)
			if err == nil {
				return out
			}
			lastErr = err // connection-level failure: try the next address
		}
	}
	return all(storagev1.RecipientOutcome_OUTCOME_DEFERRED, "connection failed: "+lastErr.Error())
}

// addresses resolves a next hop "host:port" to "ip:port"s through the
// configured resolver (never the system's behind the runner's back).
func (r *Runner) addresses(ctx context.Context, hostport string) ([]string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip != nil {
		return []string{hostport}, nil
	}
	ips, err := r.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.IP.String(), port))
	}
	return out, nil
}

// deliverHost runs one SMTP transaction with host (at addr). A non-nil error
// means no transaction happened (try another address).
func (r *Runner) deliverHost(ctx context.Context, item *storagev1.QueueItem, host, addr string, rcpts []string) ([]*storagev1.RecipientOutcome, error) {
	d := net.Dialer{Timeout: r.cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(r.cfg.CommandTimeout))
	serverName, _, _ := net.SplitHostPort(host)
	c, err := smtp.NewClient(conn, serverName)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer c.Close()
	if err := c.Hello(r.cfg.Hostname); err != nil {
		return nil, err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		// Opportunistic (RFC 3207): encrypt when offered, without insisting
		// on a verifiable certificate, as MTAs do without DANE/MTA-STS.
		if err := c.StartTLS(&tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}); err != nil {
			return nil, err
		}
	}
	outcomes := map[string]*storagev1.RecipientOutcome{}
	result := func(a string, o storagev1.RecipientOutcome_Outcome, text string) {
		outcomes[a] = &storagev1.RecipientOutcome{Address: a, Outcome: o, Result: text}
	}
	var list []*storagev1.RecipientOutcome
	finish := func() []*storagev1.RecipientOutcome {
		for _, a := range rcpts {
			list = append(list, outcomes[a])
		}
		return list
	}
	if err := c.Mail(item.MailFrom); err != nil {
		for _, a := range rcpts {
			result(a, classify(err), describe(err))
		}
		return finish(), nil
	}
	var accepted []string
	for _, a := range rcpts {
		if err := c.Rcpt(a); err != nil {
			result(a, classify(err), describe(err))
			continue
		}
		accepted = append(accepted, a)
	}
	if len(accepted) == 0 {
		return finish(), nil
	}
	err = r.sendData(ctx, c, item.Id)
	for _, a := range accepted {
		if err != nil {
			result(a, classify(err), describe(err))
		} else {
			result(a, storagev1.RecipientOutcome_OUTCOME_DELIVERED, "250 accepted by "+host)
		}
	}
	c.Quit()
	return finish(), nil
}

// deliverLocal delivers a local item (its recipients' mailboxes were full
// when it arrived) through the storage tier: a mailbox with room now gets
// it, one still full waits for the next attempt, a recipient gone since
// fails (and the sender gets a DSN).
func (r *Runner) deliverLocal(ctx context.Context, item *storagev1.QueueItem, rcpts []string) []*storagev1.RecipientOutcome {
	var out []*storagev1.RecipientOutcome
	body, err := r.store.QueueBodyReader(ctx, item.Id)
	if err == nil {
		var resp *storagev1.DeliverResponse
		resp, err = r.store.Deliver(ctx, &storagev1.DeliverRequest_Metadata{Recipients: rcpts, SizeHint: item.Size}, body)
		body.Close()
		if err == nil {
			for _, res := range resp.Results {
				out = append(out, localOutcome(res))
			}
			return out
		}
	}
	for _, a := range rcpts {
		out = append(out, &storagev1.RecipientOutcome{Address: a, Outcome: storagev1.RecipientOutcome_OUTCOME_DEFERRED, Result: "451 4.3.0 storage: " + err.Error()})
	}
	return out
}

// localOutcome maps a local delivery result to a queue outcome, with the
// reply text an MX would have given.
func localOutcome(res *storagev1.RecipientResult) *storagev1.RecipientOutcome {
	o := &storagev1.RecipientOutcome{Address: res.Recipient}
	switch res.Status {
	case storagev1.RecipientResult_STATUS_DELIVERED:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DELIVERED, "250 delivered to the local mailbox"
	case storagev1.RecipientResult_STATUS_OVER_QUOTA:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DEFERRED, "452 4.2.2 mailbox full"
	case storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DEFERRED, "451 4.3.0 temporary storage failure"
	case storagev1.RecipientResult_STATUS_DISABLED:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.2.1 mailbox disabled"
	default:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.1.1 no such user here"
	}
	return o
}

// sendData streams the queued body into DATA.
func (r *Runner) sendData(ctx context.Context, c *smtp.Client, id string) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	stream, err := r.store.Queue.GetQueueBody(ctx, &storagev1.GetQueueBodyRequest{Id: id})
	if err != nil {
		w.Close()
		return &temporary{err}
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			// Abandon the transaction: closing without the final dot would
			// be read as the end of a truncated message, so drop the line.
			c.Close()
			return &temporary{err}
		}
		if _, err := w.Write(resp.GetChunk().GetData()); err != nil {
			return err
		}
	}
	return w.Close()
}

type temporary struct{ err error }

func (t *temporary) Error() string { return "local error: " + t.err.Error() }

// classify maps an SMTP error to an outcome: 5xx fails, anything else defers.
func classify(err error) storagev1.RecipientOutcome_Outcome {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 && te.Code < 600 {
		return storagev1.RecipientOutcome_OUTCOME_FAILED
	}
	return storagev1.RecipientOutcome_OUTCOME_DEFERRED
}

// describe renders an error as the remote reply ("550 5.1.1 No such user").
func describe(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, te.Msg)
	}
	return err.Error()
}
