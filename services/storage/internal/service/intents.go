package service

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Upload intents: before a body is written to the body store, the replica
// puts uploads/<body key> on its own etcd lease. The transaction that first
// references the body requires the intent (a replica whose lease expired
// cannot commit), and the last step of the request deletes it. So at every
// moment a stored body has a reference record, an intent or a freed record,
// and the orphan scan needs no clock to tell an upload in flight from an
// orphan: if the replica dies, its lease ends and its intents with it.

// uploadLeaseTTL is how long an intent outlives a replica that stopped
// renewing it (seconds).
const uploadLeaseTTL = 60

// leaseKeeper holds one etcd lease per replica, kept alive, replaced when lost.
type leaseKeeper struct {
	etcd *clientv3.Client

	mu          sync.Mutex
	id          clientv3.LeaseID
	stopRenewal context.CancelFunc
}

// checkLost drops the lease if etcd no longer has it (expired or revoked:
// its intents are gone), so that the next upload gets a new one at once
// instead of when the keep-alive notices, up to a third of the TTL later.
// Called when a commit finds an intent missing or a register fails.
// It reports whether it dropped the lease.
func (k *leaseKeeper) checkLost(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	k.mu.Lock()
	id := k.id
	k.mu.Unlock()
	if id == 0 {
		return false
	}
	resp, err := k.etcd.TimeToLive(ctx, id)
	if err != nil || resp.TTL > 0 {
		return false // unknown, or alive
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.id != id {
		return false
	}
	k.id = 0
	k.stopRenewal()
	return true
}

// lease returns the replica's live lease, granting a new one if needed.
func (k *leaseKeeper) lease(ctx context.Context) (clientv3.LeaseID, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.id != 0 {
		return k.id, nil
	}
	grant, err := k.etcd.Grant(ctx, uploadLeaseTTL)
	if err != nil {
		return 0, err
	}
	// The keep-alive lives as long as the client; when its channel closes
	// the lease is gone (expired or revoked) and the next call grants anew.
	renewCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	alive, err := k.etcd.KeepAlive(renewCtx, grant.ID)
	if err != nil {
		stop()
		return 0, err
	}
	k.id, k.stopRenewal = grant.ID, stop
	go func(id clientv3.LeaseID) {
		for range alive {
		}
		k.mu.Lock()
		if k.id == id {
			k.id = 0
		}
		k.mu.Unlock()
	}(grant.ID)
	return k.id, nil
}

// uploadKeys hands out body keys whose intents are registered, from a
// replica-wide batch: deliveries, APPENDs and queue hand-offs then cost one
// etcd write per intentBatch messages instead of one each. A batch belongs
// to one lease; when the replica's lease changes (the old one expired, and
// its intents with it) the rest of the batch is dropped.
type uploadKeys struct {
	s *Server

	mu    sync.Mutex
	lease clientv3.LeaseID
	keys  []string
}

// next returns a body key whose upload intent is registered. A batch that
// cannot be registered because the lease is gone is tried once more on a new
// lease.
func (u *uploadKeys) next(ctx context.Context) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for attempt := 0; ; attempt++ {
		// Under u.mu, so that a caller holding an older lease cannot
		// replace a batch registered on the newer one.
		id, err := u.s.leases.lease(ctx)
		if err != nil {
			return "", err
		}
		if u.lease != id {
			u.lease, u.keys = id, nil
		}
		if len(u.keys) > 0 {
			key := u.keys[0]
			u.keys = u.keys[1:]
			return key, nil
		}
		keys, err := u.s.registerIntents(ctx, id, intentBatch)
		if err == nil {
			u.keys = keys
			continue
		}
		if attempt > 0 || !u.s.leases.checkLost(ctx) {
			return "", err
		}
	}
}

// registerIntents makes n new body keys and puts their intents on lease id
// in one write.
func (s *Server) registerIntents(ctx context.Context, id clientv3.LeaseID, n int) ([]string, error) {
	ops := make([]clientv3.Op, 0, n)
	keys := make([]string, 0, n)
	now := time.Now()
	for range n {
		key := newBodyKey(now)
		keys = append(keys, key)
		ops = append(ops, clientv3.OpPut(s.keys.Upload(key), "", clientv3.WithLease(id)))
	}
	// Not the caller's context: a caller gone after etcd applied the write
	// would leave the batch's intents unused for the lease's whole life.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if _, err := s.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		return nil, err
	}
	return keys, nil
}

// forgetUpload deletes an intent outside a transaction (the request ends
// without referencing the body, which it deletes itself).
func (s *Server) forgetUpload(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if _, err := s.etcd.Delete(ctx, s.keys.Upload(key)); err != nil {
		s.log.Warn("could not delete an upload intent; it ends with the lease", "body", key, "err", err)
	}
}

// intentPool hands out body keys whose intents were registered together, a
// batch per etcd write: a stream of many messages (AppendMessages) then
// costs one write per batch instead of one per message.
type intentPool struct {
	s    *Server
	keys []string
}

// intentBatch is how many intents one write registers.
const intentBatch = 64

// next returns a registered key.
func (p *intentPool) next(ctx context.Context) (string, error) {
	if len(p.keys) == 0 {
		id, err := p.s.leases.lease(ctx)
		if err != nil {
			return "", err
		}
		fresh, err := p.s.registerIntents(ctx, id, intentBatch)
		if err != nil {
			return "", err
		}
		p.keys = fresh
	}
	key := p.keys[0]
	p.keys = p.keys[1:]
	return key, nil
}

// release deletes the intents of the keys never used.
func (p *intentPool) release() {
	if len(p.keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var ops []clientv3.Op
	for _, key := range p.keys {
		ops = append(ops, clientv3.OpDelete(p.s.keys.Upload(key)))
	}
	if _, err := p.s.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		p.s.log.Warn("could not delete unused upload intents; they end with the lease", "err", err)
	}
	p.keys = nil
}
