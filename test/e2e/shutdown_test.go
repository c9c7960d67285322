package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// A pod's shutdown at real concurrency: 20 accounts, each with 8 IMAP
// sessions on pod A (half in IDLE, half selected between commands) and a
// POP3 session in the TRANSACTION state; one more IMAP session idles on pod
// B. SIGTERM to A:
//   - every IMAP session on A gets "* BYE" and then its connection closes
//     (RFC 9051 7.1.5: "The BYE response is always untagged and indicates
//     that the server is about to close the connection");
//   - every POP3 session gets "-ERR [SYS/TEMP]" (RFC 3206 section 4's
//     code for a temporary system problem) and then its connection
//     closes, and the message it marked with DELE is still there (RFC 1939
//     section 6: messages are removed in the UPDATE state, which only QUIT
//     enters);
//   - the maildrop locks are released at once: pod B opens each account's
//     maildrop right after (RFC 1939 section 4: a session in the
//     TRANSACTION state holds an exclusive-access lock on its maildrop, so
//     a lock left behind would refuse it);
//   - pod B's sessions go on: its IDLE sees a message delivered after A went.
func TestShutdownTellsEverySession(t *testing.T) {
	const accounts, imapPerAccount = 20, 8
	args := []string{"--max-conns-per-ip", "1000", "--shutdown-timeout", "30s"}
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2, AccessArgs: args})

	type session struct {
		name string
		conn net.Conn
		r    *bufio.Reader
		pop3 bool
	}
	var onA []session
	users := make([]string, accounts)
	for i := range accounts {
		users[i] = fmt.Sprintf("shut%02d@example.test", i)
		c.CreateAccount(users[i], "shut-secret")
		c.Deliver([]string{users[i]}, message(i))
		for j := range imapPerAccount {
			r := rawDial(t, c.Access[0].IMAPS, true)
			r.expect("LOGIN "+users[i]+" shut-secret", "OK")
			r.expect("SELECT INBOX", "OK")
			if j%2 == 0 {
				fmt.Fprintf(r.conn, "i1 IDLE\r\n")
				if l := r.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("IDLE: %q", l)
				}
			}
			onA = append(onA, session{fmt.Sprintf("IMAP %d of %s", j, users[i]), r.conn, r.r, false})
		}
		p := pop3Dial(t, c.Access[0].POP3S)
		p.do("USER "+users[i], "+OK")
		p.do("PASS shut-secret", "+OK")
		p.do("DELE 1", "+OK") // marked only: deleted at QUIT, never at a shutdown
		onA = append(onA, session{"POP3 of " + users[i], p.conn, p.r, true})
	}
	b := rawDial(t, c.Access[1].IMAPS, true)
	b.expect("LOGIN "+users[0]+" shut-secret", "OK")
	b.expect("SELECT INBOX", "OK")
	fmt.Fprintf(b.conn, "b1 IDLE\r\n")
	if l := b.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE on pod B: %q", l)
	}

	// told reads what a session on A gets until its connection closes.
	told := func(s session) error {
		s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var got []string
		for {
			l, err := s.r.ReadString('\n')
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return fmt.Errorf("%s: %v after %q", s.name, err, got)
				}
				want := "* BYE "
				if s.pop3 {
					want = "-ERR [SYS/TEMP]"
				}
				if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], want) {
					return fmt.Errorf("%s: closed after %q, want %q… last", s.name, got, want)
				}
				return nil
			}
			got = append(got, strings.TrimRight(l, "\r\n"))
		}
	}
	go c.Access[0].Signal(syscall.SIGTERM)
	var wg sync.WaitGroup
	errs := make(chan error, len(onA))
	for _, s := range onA {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- told(s)
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed++; failed <= 5 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d sessions on the stopped pod were not told and closed", failed, len(onA))
	}

	// Every maildrop is free at once, and still holds its message.
	for _, u := range users {
		p := pop3Dial(t, c.Access[1].POP3S)
		p.do("USER "+u, "+OK")
		p.do("PASS shut-secret", "+OK")
		if stat := p.do("STAT", "+OK"); !strings.HasPrefix(stat, "+OK 1 ") {
			t.Errorf("%s after the shutdown: STAT %q, want one message", u, stat)
		}
		p.do("QUIT", "+OK")
	}
	// Pod B's session goes on.
	c.Deliver([]string{users[0]}, message(100))
	for {
		l := b.line()
		if strings.HasSuffix(l, " EXISTS") {
			if l != "* 2 EXISTS" {
				t.Fatalf("IDLE on pod B after pod A stopped: %q, want * 2 EXISTS", l)
			}
			break
		}
	}
	fmt.Fprintf(b.conn, "DONE\r\n")
	for {
		l := b.line()
		if strings.HasPrefix(l, "b1 ") {
			if !strings.HasPrefix(l, "b1 OK") {
				t.Fatalf("DONE on pod B: %q", l)
			}
			break
		}
	}
}
