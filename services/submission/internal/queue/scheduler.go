package queue

import (
	"context"
	"sync"
	"time"
)

// scheduler holds a runner's leased items as jobs per destination and hands
// them to workers: a job whose destination already has limit deliveries
// running waits, and the workers go on with other destinations'.
type scheduler struct {
	limit int

	mu     sync.Mutex
	cond   *sync.Cond
	dests  map[string]*destination
	held   int           // items leased and not finished
	leased map[int64]int // lease id → items held under it
	closed bool
	room   chan struct{} // an item finished
}

type destination struct {
	waiting        []*job
	running        int
	suspendedUntil time.Time
	why            string
}

func newScheduler(limit int) *scheduler {
	s := &scheduler{limit: limit, dests: map[string]*destination{}, leased: map[int64]int{}, room: make(chan struct{}, 1)}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *scheduler) dest(name string) *destination {
	d := s.dests[name]
	if d == nil {
		d = &destination{}
		s.dests[name] = d
	}
	return d
}

// add queues an item's jobs, unless every destination they need already has
// a backlog of limit jobs waiting (the item is better left in the queue,
// where another runner, or this one later, takes it).
func (s *scheduler) add(jobs []*job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	saturated := true
	for _, j := range jobs {
		if d := s.dests[j.dest]; d == nil || len(d.waiting) < s.limit {
			saturated = false
		}
	}
	if saturated {
		return false
	}
	for _, j := range jobs {
		d := s.dest(j.dest)
		d.waiting = append(d.waiting, j)
	}
	s.holdLocked(jobs[0].p.leaseID)
	s.cond.Broadcast()
	return true
}

// hold counts an item as held (its lease is renewed) until unhold.
func (s *scheduler) hold(leaseID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdLocked(leaseID)
}

func (s *scheduler) holdLocked(leaseID int64) {
	s.held++
	s.leased[leaseID]++
}

func (s *scheduler) unhold(leaseID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held--
	if s.leased[leaseID]--; s.leased[leaseID] <= 0 {
		delete(s.leased, leaseID)
	}
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// waitRoom waits until fewer than max items are held and returns how many
// more may be leased; 0 when ctx ends.
func (s *scheduler) waitRoom(ctx context.Context, max int) int {
	for {
		s.mu.Lock()
		n := max - s.held
		s.mu.Unlock()
		if n > 0 {
			return n
		}
		select {
		case <-ctx.Done():
			return 0
		case <-s.room:
		}
	}
}

// next returns the next job to run: from a destination below its limit,
// chosen at random among them (Go's map order) so that none starves. After
// close it returns the jobs left with run false (they go back untried), then
// ok false.
func (s *scheduler) next() (j *job, run, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, d := range s.dests {
			if len(d.waiting) == 0 || (!s.closed && d.running >= s.limit) {
				continue
			}
			j, d.waiting = d.waiting[0], d.waiting[1:]
			if !s.closed {
				d.running++
			}
			return j, !s.closed, true
		}
		if s.closed {
			return nil, false, false
		}
		s.cond.Wait()
	}
}

// done ends a job that next returned with run true.
func (s *scheduler) done(j *job, ran bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dests[j.dest]
	if ran {
		d.running--
	}
	if d.running == 0 && len(d.waiting) == 0 && time.Now().After(d.suspendedUntil) {
		delete(s.dests, j.dest)
	}
	s.cond.Broadcast()
}

// suspend marks a destination unreachable until a time: its jobs are
// deferred without a connection until then.
func (s *scheduler) suspend(name string, until time.Time, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dest(name)
	d.suspendedUntil, d.why = until, why
}

func (s *scheduler) suspended(name string) (time.Time, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.dests[name]; d != nil && time.Now().Before(d.suspendedUntil) {
		return d.suspendedUntil, d.why
	}
	return time.Time{}, ""
}

// close makes next hand out what is left without running it, then stop.
func (s *scheduler) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cond.Broadcast()
}

// leases returns the lease ids of the items held.
func (s *scheduler) leases() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, 0, len(s.leased))
	for id := range s.leased {
		out = append(out, id)
	}
	return out
}

func (s *scheduler) stats() map[string]DestinationStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]DestinationStats{}
	for name, d := range s.dests {
		if len(d.waiting)+d.running > 0 {
			out[name] = DestinationStats{Waiting: len(d.waiting), InFlight: d.running}
		}
	}
	return out
}
