// Package rspamdtest starts a real rspamd (Debian's package; see
// hack/install-rspamd.sh) on loopback for tests: only its proxy worker, in
// milter mode, scanning by itself, with a configuration written into a
// temporary directory.
//
// Nothing it does leaves the machine: no C modules are loaded (filters = "":
// no fuzzy_check, no DKIM, no regexp rules), the only Lua plugin is
// milter_headers (it writes X-Spamd-Result and friends, and asks nothing of
// anyone), no redis and no map URLs are configured, and its DNS resolver is
// the test's loopback DNS server or a loopback port nobody listens on. The
// GTUBE test pattern needs no rule: rspamd's message parser matches it
// (options.enable_test_patterns) and answers the reject action.
package rspamdtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/mailfleet/mailfleet/pkg/testport"
)

// GTUBE is the standard anti-spam test string; a message with it in a text
// part gets rspamd's reject action.
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Options shape rspamd's answers.
type Options struct {
	// DNS is the resolver rspamd may ask, host:port on loopback; empty: a
	// loopback port nobody listens on.
	DNS string
	// QuarantineOnReject makes the proxy ask the MTA to quarantine what it
	// would reject (its quarantine_on_reject: SMFIR_QUARANTINE instead of
	// SMFIR_REPLYCODE 554).
	QuarantineOnReject bool
}

// Server is one running rspamd.
type Server struct {
	// Addr is the milter port, host:port.
	Addr string
	dir  string
	bin  string
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

var configTemplate = template.Must(template.New("rspamd.conf").Parse(`# Written by test/rspamdtest: a proxy worker in milter mode and nothing else.
options {
  pidfile = "{{.Dir}}/rspamd.pid";
  # No C modules (fuzzy_check, dkim, chartable, regexp): nothing asks the network.
  filters = "";
  dns {
    nameserver = ["{{.DNS}}"];
    timeout = 1s;
    retransmits = 1;
  }
  # Every client is a stranger (127.0.0.1 included): no local exceptions.
  local_addrs = [];
  # The GTUBE patterns (off by default since rspamd 3.0).
  enable_test_patterns = true;
  # A tiny suffix list: the full one takes a minute to compile on two cores.
  url_tld = "{{.Dir}}/tld.dat";
  hs_cache_dir = "{{.Dir}}";
}
logging {
  type = "file";
  filename = "{{.Dir}}/rspamd.log";
  level = "info";
}
actions {
  reject = 15;
  add_header = 6;
}
# Only milter_headers: it adds the X-Spamd-Result and X-Rspamd-* fields.
modules {
  path = "/usr/share/rspamd/plugins/milter_headers.lua";
}
milter_headers {
  skip_local = false;
  skip_authenticated = false;
  use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-status"];
}
worker "rspamd_proxy" {
  bind_socket = "{{.Addr}}";
  milter = yes;
  count = 1;
  timeout = 30s;
  upstream "local" {
    default = yes;
    self_scan = yes;
  }
  quarantine_on_reject = {{.Quarantine}};
  reject_message = "Spam message rejected";
  spam_header = "X-Spam";
}
`))

// Start writes the configuration into dir, starts rspamd and waits until
// its milter port answers.
func Start(dir string, o Options) (*Server, error) {
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		return nil, errors.New("rspamd not found: run hack/install-rspamd.sh (Debian's rspamd package)")
	}
	port, err := testport.Free()
	if err != nil {
		return nil, err
	}
	if o.DNS == "" {
		dead, err := testport.Free() // reserved for this test, never listened on
		if err != nil {
			return nil, err
		}
		o.DNS = "127.0.0.1:" + strconv.Itoa(dead)
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, done: make(chan struct{})}
	if err := os.WriteFile(filepath.Join(dir, "tld.dat"), []byte("com\norg\nnet\ntest\nexample\n"), 0o644); err != nil {
		return nil, err
	}
	var conf strings.Builder
	if err := configTemplate.Execute(&conf, map[string]any{"Dir": dir, "DNS": o.DNS, "Addr": s.Addr, "Quarantine": o.QuarantineOnReject}); err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "rspamd.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	s.bin, s.conf = bin, confPath
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart stops rspamd and starts it again on the same port, with the same
// configuration (a filter restarted under load).
func (s *Server) Restart() error {
	s.Stop()
	s.done = make(chan struct{})
	return s.start()
}

// start starts the process and waits until its milter port answers.
func (s *Server) start() error {
	// -f: stay in the foreground; -i: run workers as root too (CI is root).
	s.cmd = exec.Command(s.bin, "-f", "-i", "-c", s.conf,
		"--var=DBDIR="+s.dir, "--var=RUNDIR="+s.dir, "--var=LOGDIR="+s.dir)
	s.cmd.Env = append(os.Environ(), "TMPDIR="+s.dir)
	out, err := os.OpenFile(filepath.Join(s.dir, "rspamd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	// Its own process group, so that Stop reaches the workers too; the main
	// process dies with the test.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		out.Close()
		return err
	}
	done := s.done
	go func() { s.cmd.Wait(); out.Close(); close(done) }()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("rspamd exited: %s\n%s", s.cmd.ProcessState, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("rspamd's milter port %s did not open in 60s:\n%s", s.Addr, s.Log())
		}
	}
}

// Stop ends rspamd and its workers (SIGTERM to its process group, whose
// main process stops the workers; SIGKILL to the group after 10s) and waits
// until the main process is gone. It may be called more than once.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return // gone: its group id may belong to someone else by now
	default:
	}
	pgid := s.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
}

// Log returns rspamd's log and what it printed.
func (s *Server) Log() string {
	log, _ := os.ReadFile(filepath.Join(s.dir, "rspamd.log"))
	out, _ := os.ReadFile(filepath.Join(s.dir, "rspamd.out"))
	return string(out) + string(log)
}
