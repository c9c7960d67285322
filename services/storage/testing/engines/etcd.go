package engines

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mailfleet/mailfleet/pkg/testport"
)

// EtcdCluster is a real etcd cluster of one or more members on loopback.
type EtcdCluster struct {
	Members []*EtcdMember
}

// EtcdMember is one member; it can be stopped, killed and started again with
// its data kept.
type EtcdMember struct {
	Name      string
	ClientURL string
	proc      *process
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// StartEtcd starts an etcd cluster of n members with data under dir and waits
// until every member is healthy. Stop it with Stop. extraArgs are added to
// every member's flags, for example "--quota-backend-bytes", "16777216".
func StartEtcd(dir string, n int, extraArgs ...string) (*EtcdCluster, error) {
	bin, err := binary("MAILFLEET_ETCD_BIN", "install-etcd.sh")
	if err != nil {
		return nil, err
	}
	type ports struct{ client, peer int }
	var all []ports
	var initial []string
	for i := 0; i < n; i++ {
		c, err := testport.Free()
		if err != nil {
			return nil, err
		}
		p, err := testport.Free()
		if err != nil {
			return nil, err
		}
		all = append(all, ports{c, p})
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, p))
	}
	cluster := &EtcdCluster{}
	for i, p := range all {
		name := fmt.Sprintf("m%d", i)
		dataDir := filepath.Join(dir, name)
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", p.client)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", p.peer)
		m := &EtcdMember{Name: name, ClientURL: clientURL, proc: &process{
			name: "etcd " + name,
			bin:  bin,
			args: []string{
				"--name", name,
				"--data-dir", dataDir,
				"--listen-client-urls", clientURL,
				"--advertise-client-urls", clientURL,
				"--listen-peer-urls", peerURL,
				"--initial-advertise-peer-urls", peerURL,
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-state", "new",
				"--initial-cluster-token", "mailfleet-test",
				"--log-level", "warn",
				// Short elections so that losing a member is a short blip.
				"--heartbeat-interval", "50",
				"--election-timeout", "500",
				// As the chart sets: keep one hour of history for watchers.
				"--auto-compaction-mode", "periodic",
				"--auto-compaction-retention", "1h",
			},
			logPath: filepath.Join(dir, name+".log"),
		}}
		m.proc.args = append(m.proc.args, extraArgs...)
		cluster.Members = append(cluster.Members, m)
	}
	for _, m := range cluster.Members {
		if err := m.proc.start(); err != nil {
			cluster.Stop()
			return nil, err
		}
	}
	for _, m := range cluster.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			cluster.Stop()
			return nil, err
		}
	}
	return cluster, nil
}

// WaitHealthy waits until the member reports itself healthy.
func (m *EtcdMember) WaitHealthy(timeout time.Duration) error {
	if err := waitHTTP(context.Background(), m.ClientURL+"/health", timeout); err != nil {
		return fmt.Errorf("etcd %s: %v\n%s", m.Name, err, m.proc.logTail())
	}
	return nil
}

// Stop stops the member gracefully.
func (m *EtcdMember) Stop() { m.proc.stop(syscall.SIGTERM) }

// Kill kills the member with SIGKILL.
func (m *EtcdMember) Kill() { m.proc.stop(syscall.SIGKILL) }

// Start starts a stopped member again with its data.
func (m *EtcdMember) Start() error {
	// A restarted member rejoins the existing cluster from its data dir; the
	// initial-cluster flags are ignored then.
	return m.proc.start()
}

// Stop stops every member.
func (c *EtcdCluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
}
