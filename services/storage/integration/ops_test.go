package integration

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/testport"
)

// /healthz, /readyz and /metrics answer; readiness follows the body store;
// SIGTERM stops the process cleanly.
func TestOpsEndpointsAndGracefulShutdown(t *testing.T) {
	c := newCluster(t, options{})
	get := func(r *replica, path string) (int, string) {
		t.Helper()
		ops := r.args[3]
		resp, err := http.Get("http://" + ops + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, sb.String()
	}
	r := c.replicas[0]
	if code, _ := get(r, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get(r, "/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	setupAccount(t, r, "metrics@example.test", 0, 0)
	if code, body := get(r, "/metrics"); code != 200 || !strings.Contains(body, `mailfleet_storage_rpc_requests_total{code="OK",method="/mailfleet.storage.v1.AccountService/CreateAccount"} 1`) {
		t.Fatalf("/metrics = %d, no CreateAccount counter", code)
	}

	// A replica whose bucket does not exist is alive but not ready.
	port, _ := testport.Free()
	ops, _ := testport.Free()
	bad := &replica{t: t, addr: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(t.TempDir(), "bad.log"), args: append([]string{
		"--grpc-listen", "127.0.0.1:" + strconv.Itoa(port), "--ops-listen", "127.0.0.1:" + strconv.Itoa(ops),
	}, r.args[4:]...)}
	for i, a := range bad.args {
		if a == "--s3-bucket" {
			bad.args[i+1] = "no-such-bucket"
		}
	}
	bad.start()
	t.Cleanup(func() { bad.stop(syscall.SIGKILL) })
	if code, body := get(bad, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "body store") {
		t.Fatalf("/readyz without a bucket = %d %q", code, body)
	}

	// SIGTERM: the process exits by itself, promptly and with status 0.
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() {
		for cmd.ProcessState == nil {
			time.Sleep(20 * time.Millisecond)
		}
		exited <- nil
	}()
	select {
	case <-exited:
		if !cmd.ProcessState.Success() {
			t.Fatalf("storage exited with %v after SIGTERM", cmd.ProcessState)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("storage did not stop within 10s of SIGTERM")
	}
	logs, _ := exec.Command("cat", r.log).Output()
	if !strings.Contains(string(logs), `"msg":"stopped"`) {
		t.Fatal("no clean shutdown in the log")
	}
}
