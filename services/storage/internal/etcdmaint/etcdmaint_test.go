package etcdmaint

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const mib = 1 << 20

// member builds a member whose status says who leads and how big it is.
func member(id, leader uint64, name string, size, inUse, quota int64) Member {
	return Member{ID: id, Name: name, Status: &clientv3.StatusResponse{
		Header: &pb.ResponseHeader{MemberId: id}, Leader: leader,
		DbSize: size, DbSizeInUse: inUse, DbSizeQuota: quota,
	}}
}

func TestPickNextFollowersFirstLeaderLast(t *testing.T) {
	const quota = 2048 * mib
	// m1 leads; every member has 300 MiB free.
	members := []Member{
		member(1, 1, "m0", 1000*mib, 700*mib, quota),
		member(2, 1, "m1", 1000*mib, 700*mib, quota),
		member(3, 1, "m2", 1000*mib, 700*mib, quota),
	}
	members[0], members[1] = members[1], members[0] // the leader first in the list
	done := map[uint64]bool{}
	var order []string
	for {
		next, _, ok := pickNext(members, done, 256*mib, false)
		if !ok {
			break
		}
		order = append(order, next.Name)
		done[next.ID] = true
	}
	if got := strings.Join(order, " "); got != "m1 m2 m0" {
		t.Fatalf("order = %q, want the followers m1 m2, then the leader m0", got)
	}
}

func TestPickNextSkipsSmallAndSilentMembers(t *testing.T) {
	const quota = 2048 * mib
	members := []Member{
		member(1, 1, "leader", 1000*mib, 100*mib, quota),   // 900 MiB free
		member(2, 1, "small", 1000*mib, 900*mib, quota),    // 100 MiB free: not worth it
		{ID: 3, Name: "silent", Err: errTest("no answer")}, // no status
	}
	next, _, ok := pickNext(members, map[uint64]bool{}, 256*mib, false)
	if !ok || next.Name != "leader" {
		t.Fatalf("next = %q %v, want the leader (the only member over the threshold)", next.Name, ok)
	}
	if _, _, ok := pickNext(members, map[uint64]bool{1: true}, 256*mib, false); ok {
		t.Fatal("picked a member under the threshold")
	}
}

func TestDefragReasonUnderNoSpace(t *testing.T) {
	const quota = 100 * mib // disarm line: 90 MiB
	tests := []struct {
		name        string
		size, inUse int64
		noSpace     bool
		want        bool
	}{
		{"free space over the threshold, no alarm", 100 * mib, 10 * mib, false, true},
		{"little free space, no alarm", 100 * mib, 95 * mib, false, false},
		{"alarm, defrag brings it under the line", 99 * mib, 80 * mib, true, true},
		{"alarm, data in use over the line: defrag cannot help", 99 * mib, 92 * mib, true, false},
		{"alarm, already under the line: disarm without defrag", 85 * mib, 80 * mib, true, false},
	}
	for _, tc := range tests {
		st := &clientv3.StatusResponse{DbSize: tc.size, DbSizeInUse: tc.inUse, DbSizeQuota: quota}
		// A threshold above any free space here, so that only NOSPACE decides.
		minFree := int64(50 * mib)
		if got := defragReason(st, minFree, tc.noSpace) != ""; got != tc.want {
			t.Errorf("%s: defragment = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := disarmLine(quota); got != 90*mib {
		t.Fatalf("disarmLine(100 MiB) = %d, want 90 MiB", got)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
