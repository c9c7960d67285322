package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

// maintArgs make the etcd maintenance loop quick enough for a test.
var maintArgs = []string{
	"--etcd-status-interval=200ms",
	"--etcd-defrag-interval=500ms",
	"--etcd-defrag-min-free=1048576",
	"--etcd-defrag-pause=100ms",
}

// A 3-member etcd with a few MiB freed by compaction is defragmented by the
// one elected replica: followers first, the leader last; every member's
// database shrinks, mail survives, and both replicas export the sizes.
func TestEtcdMaintDefragmentsFollowersThenLeader(t *testing.T) {
	c := newCluster(t, options{etcdMembers: 3, replicas: 2, driver: "fs", extraArgs: maintArgs})
	ctx := ctxT(t)
	leader := waitDefragLeader(t, c.replicas)

	r := c.replicas[0]
	acc := setupAccount(t, r, "defrag@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	for i := 0; i < 20; i++ {
		if _, err := appendMsg(ctx, r, acc.Id, inbox, message(i, 2000)); err != nil {
			t.Fatal(err)
		}
	}

	// 8 MiB written, then deleted and compacted away: free pages that only
	// defragmentation gives back.
	cli := c.etcdClient()
	value := strings.Repeat("x", 128<<10)
	for i := 0; i < 64; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/filler/%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	peak := map[string]int64{}
	for _, m := range c.etcd.Members {
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		peak[m.ClientURL] = st.DbSize
	}
	del, err := cli.Delete(ctx, "/filler/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(time.Minute)
	for _, m := range c.etcd.Members {
		for {
			st, err := cli.Status(ctx, m.ClientURL)
			if err == nil && st.DbSize < peak[m.ClientURL]-4<<20 {
				t.Logf("etcd %s: %d → %d bytes", m.Name, peak[m.ClientURL], st.DbSize)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd %s was not defragmented: %+v, %d bytes before (%v)\n%s", m.Name, st, peak[m.ClientURL], err, readFile(leader.log))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Within each round the leader comes last (the last round may still be
	// finishing).
	checkRound := func(round []defragLine) {
		for i, d := range round {
			if d.Leader && i != len(round)-1 {
				t.Fatalf("the leader %s was defragmented before a follower: %+v", d.Member, round)
			}
		}
	}
	// A member's smaller size can show before the leader has logged its
	// defragmentation: read the log until all three are there (or time out).
	defragged := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var round []defragLine
		clear(defragged)
		for _, l := range defragLog(t, leader.log) {
			if l.Msg == "etcd defragmentation round done" {
				checkRound(round)
				round = nil
				continue
			}
			round = append(round, l)
			defragged[l.Member] = true
		}
		checkRound(round)
		if len(defragged) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(defragged) != 3 {
		t.Fatalf("the leader's log shows defragmentations of %v, want all 3 members", defragged)
	}

	if _, msgs := listAll(t, r, acc.Id, inbox); len(msgs) != 20 {
		t.Fatalf("%d messages after defragmentation, want 20", len(msgs))
	}
	for _, rep := range c.replicas {
		body := scrape(t, rep)
		for _, m := range c.etcd.Members {
			for _, name := range []string{"mailfleet_storage_etcd_db_size_bytes", "mailfleet_storage_etcd_db_size_in_use_bytes", "mailfleet_storage_etcd_db_quota_bytes"} {
				if metricValue(body, fmt.Sprintf(`%s{member="%s"}`, name, m.Name)) <= 0 {
					t.Fatalf("replica %s exports no %s for %s", rep.addr, name, m.Name)
				}
			}
		}
		if v := metricValue(body, `mailfleet_storage_etcd_alarm_active{alarm="NOSPACE"}`); v != 0 {
			t.Fatalf("NOSPACE alarm gauge = %v, want 0", v)
		}
	}
	body := scrape(t, leader)
	for _, m := range c.etcd.Members {
		if v := metricValue(body, fmt.Sprintf(`mailfleet_storage_etcd_defrags_total{member="%s",result="ok"}`, m.Name)); v < 1 {
			t.Fatalf("leader counted %v defragmentations of %s", v, m.Name)
		}
	}

	// A leader stopped with SIGTERM hands the election over at once: the
	// other replica leads well before the 30 s lease would have expired.
	leader.stop(syscall.SIGTERM)
	var rest []*replica
	for _, rep := range c.replicas {
		if rep != leader {
			rest = append(rest, rep)
		}
	}
	start := time.Now()
	waitDefragLeader(t, rest)
	t.Logf("election handed over in %v", time.Since(start).Round(time.Millisecond))
}

// A full etcd (NOSPACE) makes writes fail at once with a clear
// ResourceExhausted; once data is deleted and compacted, the loop
// defragments, disarms the alarm, and writes work again.
func TestNoSpaceAlarmRecovery(t *testing.T) {
	const quota = 16 << 20
	etcd, err := engines.StartEtcd(t.TempDir(), 1, "--quota-backend-bytes", strconv.Itoa(quota))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Stop)
	c := &cluster{t: t, etcd: etcd, fsDir: t.TempDir(), opts: options{
		etcdMembers: 1, replicas: 1, driver: "fs", maxMessageSize: 20 << 20, sweepGrace: time.Hour, extraArgs: maintArgs,
	}}
	r := c.startReplica(0)
	c.replicas = append(c.replicas, r)
	waitDefragLeader(t, c.replicas)
	ctx := ctxT(t)
	acc := setupAccount(t, r, "full@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(1, 2000)); err != nil {
		t.Fatal(err)
	}

	cli := c.etcdClient()
	value := strings.Repeat("x", 256<<10)
	for i := 0; ; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("/filler/%03d", i), value)
		if err == nil {
			if i > 2*quota/len(value) {
				t.Fatal("no NOSPACE after writing twice the quota")
			}
			continue
		}
		if err != rpctypes.ErrNoSpace {
			t.Fatalf("filling etcd: %v, want NOSPACE", err)
		}
		break
	}
	waitMetric(t, r, `mailfleet_storage_etcd_alarm_active{alarm="NOSPACE"}`, 1)

	// Writes are refused promptly, with a code and a message that say why.
	start := time.Now()
	_, err = appendMsg(ctx, r, acc.Id, inbox, message(2, 2000))
	took := time.Since(start)
	if status.Code(err) != codes.ResourceExhausted || storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_TEMPORARY ||
		!strings.Contains(status.Convert(err).Message(), "NOSPACE") {
		t.Fatalf("append to a full etcd: %v, want ResourceExhausted (temporary) naming NOSPACE", err)
	}
	if took > 5*time.Second {
		t.Fatalf("append to a full etcd took %v", took)
	}
	t.Logf("append under NOSPACE answered in %v: %v", took.Round(time.Millisecond), err)

	// The operator's part: delete and compact (both allowed under NOSPACE).
	del, err := cli.Delete(ctx, "/filler/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// The loop's part: defragment and disarm.
	waitMetric(t, r, `mailfleet_storage_etcd_alarm_active{alarm="NOSPACE"}`, 0)
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms after recovery: %v %v", alarms, err)
	}
	if size := metricValue(scrape(t, r), `mailfleet_storage_etcd_db_size_bytes{member="m0"}`); size <= 0 || size > quota*9/10 {
		t.Fatalf("db size after recovery = %v, quota %d", size, quota)
	}
	if !strings.Contains(readFile(r.log), "disarmed etcd NOSPACE alarm") {
		t.Fatal("no disarm in the log")
	}
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(3, 2000)); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	if _, msgs := listAll(t, r, acc.Id, inbox); len(msgs) != 2 {
		t.Fatalf("%d messages, want the 2 acknowledged ones", len(msgs))
	}
}

// waitDefragLeader waits until exactly one replica holds the defragmentation
// election, and returns it.
func waitDefragLeader(t *testing.T, replicas []*replica) *replica {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var leaders []*replica
		for _, r := range replicas {
			if metricValue(scrape(t, r), "mailfleet_storage_etcd_defrag_leader") == 1 {
				leaders = append(leaders, r)
			}
		}
		if len(leaders) > 1 {
			t.Fatalf("%d replicas hold the defragmentation election", len(leaders))
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica won the defragmentation election\n%s", readFile(replicas[0].log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitMetric(t *testing.T, r *replica, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := metricValue(scrape(t, r), series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v\n%s", series, got, want, readFile(r.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape returns the replica's /metrics page.
func scrape(t *testing.T, r *replica) string {
	t.Helper()
	resp, err := http.Get("http://" + r.args[3] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue returns the value of one series (name with its labels as
// Prometheus prints them), or -1 if the page does not have it.
func metricValue(page, series string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

type defragLine struct {
	Msg    string `json:"msg"`
	Member string `json:"member"`
	Leader bool   `json:"leader"`
}

// defragLog returns the defragmentations and round ends of a replica's log, in order.
func defragLog(t *testing.T, path string) []defragLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []defragLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l defragLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l.Msg == "defragmented etcd member" || l.Msg == "etcd defragmentation round done" {
			out = append(out, l)
		}
	}
	return out
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
