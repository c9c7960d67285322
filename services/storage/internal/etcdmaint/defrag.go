package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const nospace = pb.AlarmType_NOSPACE

// headroomPercent is the share of the quota that must be free before a NOSPACE
// alarm is disarmed: etcd raises the alarm when a write would pass the quota,
// so a database just under it is still full, and disarming it would only let
// the next large write raise it again.
const headroomPercent = 10

// callTimeout bounds the cheap calls (member list, status, alarms).
const callTimeout = 5 * time.Second

// Member is one etcd member as a round sees it.
type Member struct {
	ID       uint64
	Name     string // the member's --name, or its ID in hex if it has none yet
	Endpoint string // its first client URL
	Status   *clientv3.StatusResponse
	Err      error // why Status is nil
}

func (mem Member) isLeader() bool {
	return mem.Status != nil && mem.Status.Header != nil && mem.Status.Leader == mem.Status.Header.MemberId
}

// Refresh reads every member's status and the alarms, and updates the metrics.
func (m *Maintainer) Refresh(ctx context.Context) ([]Member, []*pb.AlarmMember, error) {
	members, err := m.members(ctx)
	if err != nil {
		return nil, nil, err
	}
	m.metrics.setMembers(members)
	actx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := m.etcd.AlarmList(actx)
	if err != nil {
		return members, nil, fmt.Errorf("etcd alarm list: %w", err)
	}
	m.metrics.setAlarms(resp.Alarms)
	m.noteNoSpace(members, hasAlarm(resp.Alarms, nospace))
	return members, resp.Alarms, nil
}

// members lists the members, sorted by name, each with its status.
func (m *Maintainer) members(ctx context.Context) ([]Member, error) {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := m.etcd.MemberList(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var out []Member
	for _, pm := range resp.Members {
		mem := Member{ID: pm.ID, Name: pm.Name}
		if mem.Name == "" {
			mem.Name = fmt.Sprintf("%x", pm.ID)
		}
		if len(pm.ClientURLs) == 0 {
			mem.Err = errors.New("no client URL (the member has not started)")
		} else {
			mem.Endpoint = pm.ClientURLs[0]
			mem.Status, mem.Err = m.status(ctx, mem.Endpoint)
		}
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *Maintainer) status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return m.etcd.Status(ctx, endpoint)
}

// noteNoSpace logs when the NOSPACE alarm appears and when it clears.
func (m *Maintainer) noteNoSpace(members []Member, on bool) {
	m.mu.Lock()
	changed := on != m.noSpaceOn
	m.noSpaceOn = on
	m.mu.Unlock()
	if !changed {
		return
	}
	if !on {
		m.log.Info("etcd NOSPACE alarm cleared")
		return
	}
	for _, mem := range members {
		if mem.Status != nil {
			m.log.Error("ETCD IS OUT OF SPACE (NOSPACE alarm): every write is refused until space is reclaimed (see docs/sizing.md)",
				"member", mem.Name, "db_size", mem.Status.DbSize, "db_size_in_use", mem.Status.DbSizeInUse, "quota", mem.Status.DbSizeQuota)
		}
	}
}

// Defragment runs one round: members that need it are defragmented one at a
// time, followers before the leader, each given time to catch up before the
// next; then, under a NOSPACE alarm, the alarm is disarmed if every member has
// room again. It does nothing while a member does not answer.
func (m *Maintainer) Defragment(ctx context.Context) error {
	done := map[uint64]bool{}
	leaderDone := false
	for {
		// Fresh statuses each time: the leader may have moved.
		members, alarms, err := m.Refresh(ctx)
		if err != nil {
			return err
		}
		for _, mem := range members {
			if mem.Status == nil {
				return fmt.Errorf("etcd member %s does not answer (%v): no defragmentation while a member is down", mem.Name, mem.Err)
			}
		}
		noSpace := hasAlarm(alarms, nospace)
		next, reason, ok := pickNext(members, done, m.cfg.MinFree, noSpace)
		if leaderDone {
			// The leader closes a round. A follower that needs it only
			// now (it applied the compaction late) waits for the next
			// round, so no follower is ever taken after the leader.
			ok = false
		}
		if !ok {
			if len(done) > 0 {
				m.log.Info("etcd defragmentation round done", "members", len(done))
			}
			if noSpace {
				return m.disarm(ctx, members, alarms)
			}
			return nil
		}
		if err := m.defragOne(ctx, next, reason, members); err != nil {
			return err
		}
		done[next.ID] = true
		leaderDone = next.isLeader()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.cfg.Pause):
		}
	}
}

// pickNext returns the next member to defragment and why: a follower that
// needs it, else the leader if it does. Members in done are skipped.
func pickNext(members []Member, done map[uint64]bool, minFree int64, noSpace bool) (Member, string, bool) {
	var leader Member
	var leaderReason string
	for _, mem := range members {
		if done[mem.ID] || mem.Status == nil {
			continue
		}
		reason := defragReason(mem.Status, minFree, noSpace)
		if reason == "" {
			continue
		}
		if mem.isLeader() {
			leader, leaderReason = mem, reason
			continue
		}
		return mem, reason, true
	}
	return leader, leaderReason, leaderReason != ""
}

// defragReason says why a member should be defragmented, or "" if not.
func defragReason(st *clientv3.StatusResponse, minFree int64, noSpace bool) string {
	free := st.DbSize - st.DbSizeInUse
	if free > 0 && free >= minFree {
		return "free space over the threshold"
	}
	// Under NOSPACE any member that defragmentation brings under the
	// disarm line is worth blocking: the cell accepts no write anyway.
	if noSpace && st.DbSizeQuota > 0 {
		line := disarmLine(st.DbSizeQuota)
		if st.DbSize > line && st.DbSizeInUse <= line {
			return "NOSPACE alarm"
		}
	}
	return ""
}

// disarmLine is the database size under which a member has room again.
func disarmLine(quota int64) int64 { return quota - quota/100*headroomPercent }

func (m *Maintainer) defragOne(ctx context.Context, mem Member, reason string, members []Member) error {
	before := mem.Status
	m.log.Info("defragmenting etcd member", "member", mem.Name, "leader", mem.isLeader(), "reason", reason,
		"db_size", before.DbSize, "db_size_in_use", before.DbSizeInUse)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DefragTimeout)
	_, err := m.etcd.Defragment(dctx, mem.Endpoint)
	cancel()
	if err != nil {
		m.metrics.defrags.WithLabelValues(mem.Name, "failed").Inc()
		m.log.Error("defragmenting etcd member failed", "member", mem.Name, "err", err, "took", time.Since(start).Round(time.Millisecond).String())
		return fmt.Errorf("defragmenting etcd member %s: %w", mem.Name, err)
	}
	m.metrics.defrags.WithLabelValues(mem.Name, "ok").Inc()
	took := time.Since(start)
	after, err := m.waitCaughtUp(ctx, mem, members)
	if err != nil {
		return err
	}
	m.log.Info("defragmented etcd member", "member", mem.Name, "leader", mem.isLeader(),
		"db_size_before", before.DbSize, "db_size_after", after.DbSize, "db_size_in_use", after.DbSizeInUse,
		"took", took.Round(time.Millisecond).String())
	return nil
}

// waitCaughtUp waits until mem has applied what the leader had committed once
// mem's defragmentation ended (it fell behind while blocked), and returns
// mem's status.
func (m *Maintainer) waitCaughtUp(ctx context.Context, mem Member, members []Member) (*clientv3.StatusResponse, error) {
	var target uint64
	for _, other := range members {
		if other.isLeader() && other.ID != mem.ID {
			if st, err := m.status(ctx, other.Endpoint); err == nil {
				target = st.RaftIndex
			}
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := m.status(ctx, mem.Endpoint)
		if err == nil && st.RaftAppliedIndex >= target {
			return st, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcd member %s did not catch up within 2m of its defragmentation (last error: %v)", mem.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// disarm clears the NOSPACE alarm if every member is under its disarm line,
// as etcd's NOSPACE procedure does after compaction and defragmentation.
func (m *Maintainer) disarm(ctx context.Context, members []Member, alarms []*pb.AlarmMember) error {
	for _, mem := range members {
		st := mem.Status
		if st.DbSizeQuota > 0 && st.DbSize > disarmLine(st.DbSizeQuota) {
			m.log.Error("etcd is out of space (NOSPACE) and defragmentation cannot make room: compact or delete data, or raise --quota-backend-bytes (see docs/sizing.md)",
				"member", mem.Name, "db_size", st.DbSize, "db_size_in_use", st.DbSizeInUse, "quota", st.DbSizeQuota)
			return nil
		}
	}
	for _, a := range alarms {
		if a.Alarm != nospace {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := m.etcd.AlarmDisarm(actx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm})
		cancel()
		if err != nil {
			return fmt.Errorf("disarming NOSPACE of etcd member %x: %w", a.MemberID, err)
		}
	}
	for _, mem := range members {
		m.log.Warn("disarmed etcd NOSPACE alarm: writes are accepted again", "member", mem.Name,
			"db_size", mem.Status.DbSize, "db_size_in_use", mem.Status.DbSizeInUse, "quota", mem.Status.DbSizeQuota)
	}
	_, _, err := m.Refresh(ctx)
	return err
}

func hasAlarm(alarms []*pb.AlarmMember, t pb.AlarmType) bool {
	for _, a := range alarms {
		if a.Alarm == t {
			return true
		}
	}
	return false
}
