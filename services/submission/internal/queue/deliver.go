package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// finish records an item's attempt (or gives it back untried), sends the
// DSNs it calls for, and lets the scheduler lease another.
func (r *Runner) finish(p *pendingItem) {
	defer r.sched.unhold(p.leaseID)
	item := p.item
	if !p.attempted {
		r.release(p, time.Now(), "shutting down")
		return
	}
	log := r.cfg.Logger.With("queue_id", item.Id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lastErr string
	var deferred []*storagev1.QueueRecipient
	for _, o := range p.outcomes {
		if o.Outcome != storagev1.RecipientOutcome_OUTCOME_DELIVERED {
			lastErr = o.Result
		}
		if o.Outcome == storagev1.RecipientOutcome_OUTCOME_DEFERRED {
			deferred = append(deferred, &storagev1.QueueRecipient{Address: o.Address, LastResult: o.Result})
		}
		r.cfg.Observer.Attempt(r.destinationOf(item, o.Address), strings.ToLower(strings.TrimPrefix(o.Outcome.String(), "OUTCOME_")))
	}
	// RFC 3464 2.3.3 Action: delayed, once per item, when it has waited
	// DelayWarning and recipients are still pending after this attempt.
	delayNotified := false
	if r.cfg.DelayWarning > 0 && !item.DelayNotified && len(deferred) > 0 && time.Since(item.CreatedAt.AsTime()) >= r.cfg.DelayWarning {
		if err := r.sendDSN(ctx, item, deferred, true); err != nil {
			log.Warn("sending a delay DSN failed; will retry at the next attempt", "err", err)
		} else {
			delayNotified = true
			r.cfg.Observer.Delayed()
			log.Info("delay DSN sent", "recipients", len(deferred))
		}
	}
	next := time.Now().Add(r.cfg.Schedule[min(int(item.Attempts), len(r.cfg.Schedule)-1)])
	resp, err := r.store.Queue.RecordAttempt(ctx, &storagev1.RecordAttemptRequest{Id: item.Id, LeaseId: p.leaseID,
		Outcomes: p.outcomes, NextAttemptAt: timestamppb.New(next), Error: lastErr, DelayNotified: delayNotified})
	if err != nil {
		log.Warn("recording a delivery attempt failed; the item will be retried", "err", err)
		return
	}
	for _, o := range p.outcomes {
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
	if err := r.sendDSN(ctx, resp.Item, failed, false); err != nil {
		log.Warn("sending a DSN failed; will retry", "err", err)
		return
	}
	var addrs []string
	for _, f := range failed {
		addrs = append(addrs, f.Address)
	}
	if _, err := r.store.Queue.Bounce(ctx, &storagev1.BounceRequest{Id: item.Id, LeaseId: p.leaseID, Recipients: addrs}); err != nil {
		log.Warn("recording the bounce failed; the DSN may be sent twice", "err", err)
		return
	}
	for _, a := range addrs {
		r.cfg.Observer.Bounced(r.destinationOf(item, a))
	}
	log.Info("bounced", "recipients", len(addrs))
}

func (r *Runner) destinationOf(item *storagev1.QueueItem, address string) string {
	if item.Local {
		return localDestination
	}
	return domainOf(address)
}

// deliverLocal delivers a local item (its recipients' mailboxes were full
// when it arrived) inside the storage tier, from the body it already holds:
// a mailbox with room now gets it, one still full waits for the next
// attempt, a recipient gone since fails (and the sender gets a DSN).
func (r *Runner) deliverLocal(ctx context.Context, p *pendingItem, rcpts []string) []*storagev1.RecipientOutcome {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := r.store.Queue.DeliverQueued(ctx, &storagev1.DeliverQueuedRequest{Id: p.item.Id, LeaseId: p.leaseID})
	if err != nil {
		return allOutcomes(rcpts, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "451 4.3.0 storage: "+err.Error())
	}
	return resp.Outcomes
}

// hosts returns the next hops for domain, in order of preference; hosts of
// equal preference in random order (RFC 5321 5.1), so that the load spreads
// over them. mx tells whether they came from MX records.
func (r *Runner) hosts(ctx context.Context, domain string) (hops []string, mx bool, err error) {
	if hop, ok := r.cfg.Routes[domain]; ok {
		return []string{hop}, false, nil
	}
	if hop, ok := r.cfg.Routes["*"]; ok {
		return []string{hop}, false, nil
	}
	port := fmt.Sprint(r.cfg.RemotePort)
	mxs, err := r.resolver.LookupMX(ctx, domain)
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		return nil, false, err
	}
	if len(mxs) == 0 {
		// RFC 5321 5.1: no MX, the domain itself is the host.
		return []string{net.JoinHostPort(domain, port)}, false, nil
	}
	mxs = slices.Clone(mxs)
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	var out []string
	for _, mx := range mxs {
		if mx.Host == "." {
			return nil, false, errNullMX // RFC 7505: the domain takes no mail
		}
		out = append(out, net.JoinHostPort(strings.TrimSuffix(mx.Host, "."), port))
	}
	return out, true, nil
}

var errNullMX = errors.New("domain does not accept mail (null MX)")

// deliverDomain tries the domain's hosts in turn and returns an outcome per
// recipient; reached is false when no host could be talked to at all.
func (r *Runner) deliverDomain(ctx context.Context, item *storagev1.QueueItem, domain string, rcpts []string) (out []*storagev1.RecipientOutcome, reached bool) {
	hosts, fromMX, err := r.hosts(ctx, domain)
	if errors.Is(err, errNullMX) {
		return allOutcomes(rcpts, storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.1.10 "+err.Error()), true
	}
	if err != nil {
		return allOutcomes(rcpts, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "DNS lookup failed: "+err.Error()), true
	}
	// MTA-STS applies to MX delivery, not to a configured route.
	var policy *stsPolicy
	if r.cfg.MTASTS && fromMX {
		policy = r.sts.policy(ctx, domain)
	}
	var lastErr error
	for _, host := range hosts {
		name, _, _ := net.SplitHostPort(host)
		if policy.active() && !policy.matches(name) {
			// RFC 8461 4.1: an MX not named by the policy is not a valid
			// destination.
			lastErr = r.stsFailure(policy, domain, name, "mx_mismatch", errors.New("MX host not listed in the policy"))
			if policy.enforce() {
				continue
			}
		}
		addrs, err := r.addresses(ctx, host)
		if err != nil {
			lastErr = err
			continue
		}
		for _, addr := range addrs {
			out, err := r.deliverHost(ctx, item, domain, host, addr, rcpts, policy)
			if err == nil {
				return out, true
			}
			lastErr = err // connection-level failure: try the next address
		}
	}
	return allOutcomes(rcpts, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "connection failed: "+lastErr.Error()), false
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
// means no transaction happened (try another address). Under an MTA-STS
// policy the server must offer STARTTLS with a certificate valid for its
// name (RFC 8461 4.2): in mode enforce it is not used otherwise.
func (r *Runner) deliverHost(ctx context.Context, item *storagev1.QueueItem, domain, host, addr string, rcpts []string, policy *stsPolicy) ([]*storagev1.RecipientOutcome, error) {
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
		// on a verifiable certificate, as MTAs do without DANE/MTA-STS; a
		// policy makes the certificate count.
		cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
		if policy.active() {
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if err := r.verifyCertificate(cs, serverName); err != nil {
					err = r.stsFailure(policy, domain, serverName, "certificate", err)
					if policy.enforce() {
						return err
					}
				}
				return nil
			}
		}
		if err := c.StartTLS(cfg); err != nil {
			return nil, err
		}
	} else if policy.active() {
		if err := r.stsFailure(policy, domain, serverName, "starttls", errors.New("STARTTLS not offered")); policy.enforce() {
			return nil, err
		}
	}
	var outcomes []*storagev1.RecipientOutcome
	if err := c.Mail(item.MailFrom); err != nil {
		return allOutcomes(rcpts, classify(err), describe(err)), nil
	}
	var accepted []string
	refused := map[string]*storagev1.RecipientOutcome{}
	for _, a := range rcpts {
		if err := c.Rcpt(a); err != nil {
			refused[a] = &storagev1.RecipientOutcome{Address: a, Outcome: classify(err), Result: describe(err)}
			continue
		}
		accepted = append(accepted, a)
	}
	var dataErr error
	if len(accepted) > 0 {
		dataErr = r.sendData(ctx, c, item.Id)
	}
	for _, a := range rcpts {
		switch {
		case refused[a] != nil:
			outcomes = append(outcomes, refused[a])
		case dataErr != nil:
			outcomes = append(outcomes, &storagev1.RecipientOutcome{Address: a, Outcome: classify(dataErr), Result: describe(dataErr)})
		default:
			outcomes = append(outcomes, &storagev1.RecipientOutcome{Address: a, Outcome: storagev1.RecipientOutcome_OUTCOME_DELIVERED, Result: "250 accepted by " + host})
		}
	}
	c.Quit()
	return outcomes, nil
}

// verifyCertificate checks the server's chain against the configured roots
// for the MX host name (RFC 8461 4.2: the name in the MX record).
func (r *Runner) verifyCertificate(cs tls.ConnectionState, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: serverName, Roots: r.cfg.RootCAs, Intermediates: inter})
	return err
}

// stsFailure reports an MX that does not satisfy a policy (log and metric;
// TLSRPT reports are not sent) and returns the error a deferral carries.
func (r *Runner) stsFailure(p *stsPolicy, domain, host, reason string, err error) error {
	r.cfg.Observer.MTASTS(p.mode, reason)
	r.cfg.Logger.Warn("MTA-STS policy not satisfied", "domain", domain, "mx", host, "mode", p.mode, "reason", reason, "err", err)
	return fmt.Errorf("4.7.5 MTA-STS policy of %s (mode %s) not satisfied by %s: %v", domain, p.mode, host, err)
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
