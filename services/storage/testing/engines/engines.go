// Package engines starts real etcd and MinIO servers on random loopback ports
// for integration tests, and stops them. The binaries are the pinned builds
// from hack/install-etcd.sh and hack/install-minio.sh (cached outside the
// checkout); $MAILFLEET_ETCD_BIN and $MAILFLEET_MINIO_BIN override them.
package engines

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	binOnce sync.Map // script name → *binResult
)

type binResult struct {
	once sync.Once
	path string
	err  error
}

// binary returns the path of a pinned engine: from the environment variable, or
// by running its install script (instant when cached).
func binary(envVar, script string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	v, _ := binOnce.LoadOrStore(script, &binResult{})
	r := v.(*binResult)
	r.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			r.err = err
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(root, "hack", script))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			r.err = fmt.Errorf("hack/%s failed: %v\n%s", script, err, stderr.String())
			return
		}
		r.path = strings.TrimSpace(string(out))
	})
	return r.path, r.err
}

// repoRoot walks up from the working directory to the directory holding go.work.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.work not found above the working directory")
		}
		dir = parent
	}
}

// process is one engine process with its log file.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies, the engine dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	p.cmd = cmd
	go func() {
		cmd.Wait()
		logFile.Close()
	}()
	return nil
}

// stop sends sig and waits for the process to exit.
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() {
		for {
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				close(done)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// logTail returns the end of the process log, for failure messages.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitHTTP polls url until it answers 200 or the timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready: %v", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
