package service

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Every message the MX takes is resolved twice, at RCPT and again by Deliver,
// and each resolution read the domain list and the address directory in
// etcd: at intake rates that was a third of the etcd requests per message.
// The directory changes rarely (an account, an alias or a domain is added or
// removed), so each replica keeps the answers and an etcd watch on the
// directory drops a domain's answers the moment any of its keys changes.
// Only the address → account step is cached: whether the account is
// disabled, deleted or full is read where it matters, in the delivery's own
// transaction (deliverOne) and fresh for the RCPT answer.

// recipientCacheTTL bounds how long an answer is kept even if a watch event
// were lost; recipientCacheEntries bounds the cache (about 100 bytes each).
// accountViewTTL is how old the account state behind an RCPT answer may be
// (disabled, mailbox full): no watch follows it (its keys change with every
// delivery), and the delivery's transaction has the last word anyway.
const (
	recipientCacheTTL     = 10 * time.Minute
	recipientCacheEntries = 100000
	accountViewTTL        = 2 * time.Second
)

// addressLookup is what the directory says about one local@domain.
type addressLookup struct {
	// domainKnown is false when the domain is not one of ours.
	domainKnown bool
	// routes holds, in the order they are tried (the address, the address
	// without its +subaddress, the catch-all), the candidates that exist.
	routes  []route
	expires time.Time
}

// route is one directory entry: an address as its account's record lists
// it ("local@domain", or "@domain" for a catch-all) and that account.
type route struct {
	account, address string
}

// recipientCache holds addressLookups while its watch runs. Every change in
// the directory bumps gen; a lookup that read etcd stores its answer only if
// gen did not move meanwhile, so an answer read before a change and stored
// after it cannot stay.
type recipientCache struct {
	ttl time.Duration // a bound even if a watch event were missed
	max int           // entries; when full the cache starts over

	hits, misses atomic.Uint64 // lookups answered from memory, from etcd

	mu   sync.Mutex
	live bool // the watch is running: answers may be kept
	gen  uint64
	size int
	// negatives counts the kept answers that route nowhere (unknown local
	// part, foreign domain). They may take half of max: a flood of random
	// RCPTs (a dictionary attack) then goes uncached instead of making the
	// cache start over and drop every real recipient's answer.
	negatives int
	// swept is when expired negative answers were last taken out (they
	// count against their half until then).
	swept    time.Time
	domains  map[string]map[string]addressLookup // domain → local part → answer
	accounts map[string]accountState             // account id → its state a moment ago
}

// accountState is an account record and its quota as read for an RCPT answer.
type accountState struct {
	rec     *records.AccountRecord // nil: the account is gone
	quota   *storagev1.Quota
	expires time.Time
}

func newRecipientCache(ttl time.Duration, max int) *recipientCache {
	return &recipientCache{ttl: ttl, max: max, domains: map[string]map[string]addressLookup{}, accounts: map[string]accountState{}}
}

// getAccount returns an account view younger than accountViewTTL, or the
// generation to pass to putAccount.
func (c *recipientCache) getAccount(id string, now time.Time) (accountState, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		if v, ok := c.accounts[id]; ok && now.Before(v.expires) {
			c.hits.Add(1)
			return v, true, c.gen
		}
	}
	c.misses.Add(1)
	return accountState{}, false, c.gen
}

// putAccount keeps an account view read after getAccount returned gen.
func (c *recipientCache) putAccount(id string, v accountState, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || gen != c.gen {
		return
	}
	if len(c.accounts) >= c.max {
		c.accounts = map[string]accountState{}
	}
	v.expires = now.Add(accountViewTTL)
	c.accounts[id] = v
}

// get returns a kept answer, or the generation to pass to put.
func (c *recipientCache) get(local, domain string, now time.Time) (addressLookup, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		if l, ok := c.domains[domain][local]; ok && now.Before(l.expires) {
			c.hits.Add(1)
			return l, true, c.gen
		}
	}
	c.misses.Add(1)
	return addressLookup{}, false, c.gen
}

// put keeps an answer read from etcd after get returned gen.
func (c *recipientCache) put(local, domain string, l addressLookup, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || gen != c.gen {
		return
	}
	negative := len(l.routes) == 0
	old, had := c.domains[domain][local]
	if negative && !(had && len(old.routes) == 0) && c.negatives >= c.max/2 {
		if now.Sub(c.swept) < c.ttl/10 {
			return // answered from etcd each time while the flood lasts
		}
		c.sweepNegatives(now)
		old, had = c.domains[domain][local]
		if c.negatives >= c.max/2 {
			return
		}
	}
	if c.size >= c.max {
		c.dropAnswers()
		had = false
	}
	byLocal := c.domains[domain]
	if byLocal == nil {
		byLocal = map[string]addressLookup{}
		c.domains[domain] = byLocal
	}
	if !had {
		c.size++
	} else if len(old.routes) == 0 {
		c.negatives--
	}
	if negative {
		c.negatives++
	}
	l.expires = now.Add(c.ttl)
	byLocal[local] = l
}

// dropAnswers empties the address answers and their counts.
func (c *recipientCache) dropAnswers() {
	c.domains, c.size, c.negatives = map[string]map[string]addressLookup{}, 0, 0
}

// sweepNegatives takes out the expired answers that route nowhere, so that
// a flood that is over stops counting against their half.
func (c *recipientCache) sweepNegatives(now time.Time) {
	c.swept = now
	for domain, byLocal := range c.domains {
		for local, l := range byLocal {
			if len(l.routes) == 0 && !now.Before(l.expires) {
				delete(byLocal, local)
				c.size--
				c.negatives--
			}
		}
		if len(byLocal) == 0 {
			delete(c.domains, domain)
		}
	}
}

// forgetDomain drops a domain's answers: one of its directory keys changed
// (a catch-all or a base address serves many local parts, so all go).
func (c *recipientCache) forgetDomain(domain string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.size -= len(c.domains[domain])
	for _, l := range c.domains[domain] {
		if len(l.routes) == 0 {
			c.negatives--
		}
	}
	delete(c.domains, domain)
}

// clear drops every answer: this replica changed the directory or an
// account, and its own next answers must not wait for the watch or the TTL.
func (c *recipientCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.dropAnswers()
	c.accounts = map[string]accountState{}
}

// setLive starts (watch running) or stops keeping answers; either way the
// cache starts empty, since changes may have been missed.
func (c *recipientCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.gen++
	c.dropAnswers()
	c.accounts = map[string]accountState{}
}

// RecipientCacheStats reports the lookups the recipient cache answered and
// those that read etcd, and whether its watch runs (for the metrics).
func (s *Server) RecipientCacheStats() (hits, misses uint64, live bool) {
	s.recipients.mu.Lock()
	live = s.recipients.live
	s.recipients.mu.Unlock()
	return s.recipients.hits.Load(), s.recipients.misses.Load(), live
}

// rcptAccount is getAccount for an RCPT answer: it may be up to
// accountViewTTL old.
func (s *Server) rcptAccount(ctx context.Context, id string) (*records.AccountRecord, *storagev1.Quota, error) {
	now := time.Now()
	v, ok, gen := s.recipients.getAccount(id, now)
	if ok {
		return v.rec, v.quota, nil
	}
	rec, q, err := s.getAccount(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	s.recipients.putAccount(id, accountState{rec: rec, quota: q}, gen, now)
	return rec, q, nil
}

// routeAddress asks the directory which accounts local@domain may reach,
// from the cache when it can.
func (s *Server) routeAddress(ctx context.Context, local, domain string) (addressLookup, error) {
	now := time.Now()
	l, ok, gen := s.recipients.get(local, domain, now)
	if ok {
		return l, nil
	}
	candidates := []string{local}
	if base, _, found := strings.Cut(local, recipientDelimiter); found && base != "" {
		candidates = append(candidates, base)
	}
	candidates = append(candidates, "@")
	ops := []clientv3.Op{clientv3.OpGet(s.keys.Domain(domain), clientv3.WithCountOnly())}
	for _, c := range candidates {
		ops = append(ops, clientv3.OpGet(s.keys.Address(domain, c)))
	}
	resp, err := s.etcd.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return addressLookup{}, err
	}
	l = addressLookup{domainKnown: resp.Responses[0].GetResponseRange().Count > 0}
	if l.domainKnown {
		for i, r := range resp.Responses[1:] {
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 {
				continue
			}
			addr := &records.AddressRecord{}
			if err := proto.Unmarshal(kvs[0].Value, addr); err != nil {
				return addressLookup{}, err
			}
			l.routes = append(l.routes, route{account: addr.AccountId, address: aliasString(candidates[i], domain)})
		}
	}
	s.recipients.put(local, domain, l, gen, now)
	return l, nil
}

// RunRecipientWatch keeps the recipient cache in step with the directory
// until ctx ends: a watch on the domain list and the address directory from
// the revision the cache starts at. While it is down (etcd unreachable, the
// revision compacted) nothing is cached and every lookup reads etcd.
func (s *Server) RunRecipientWatch(ctx context.Context) {
	defer s.recipients.setLive(false)
	for ctx.Err() == nil {
		err := s.watchRecipients(ctx)
		s.recipients.setLive(false)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("recipient cache off: directory watch ended; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) watchRecipients(ctx context.Context) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	resp, err := s.etcd.Get(ctx, s.keys.Domains(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	from := resp.Header.Revision + 1
	domains := s.etcd.Watch(ctx, s.keys.Domains(), clientv3.WithPrefix(), clientv3.WithRev(from))
	addresses := s.etcd.Watch(ctx, s.keys.Addresses(), clientv3.WithPrefix(), clientv3.WithRev(from))
	// Lookups from now on read at a revision at or after from-1; every
	// change after that reaches us through the watches.
	s.recipients.setLive(true)
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-domains:
		case wr, ok = <-addresses:
		}
		if !ok {
			return ctx.Err()
		}
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			s.recipients.forgetDomain(s.directoryDomain(string(ev.Kv.Key)))
		}
	}
}

// directoryDomain is the domain a domains/ or addresses/ key belongs to.
func (s *Server) directoryDomain(key string) string {
	if rest, ok := strings.CutPrefix(key, s.keys.Addresses()); ok {
		domain, _, _ := strings.Cut(rest, "/")
		return domain
	}
	return strings.TrimPrefix(key, s.keys.Domains())
}
