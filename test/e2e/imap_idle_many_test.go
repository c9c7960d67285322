package e2e

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// idleClient is one raw IMAP session for TestIMAPManyIdleSessionsGetPushes,
// possibly compressed (RFC 4978), which rawIMAP is not.
type idleClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	w    io.Writer
	zw   *flate.Writer // nil unless COMPRESS=DEFLATE is on
	n    int
}

func (c *idleClient) send(line string) error {
	if _, err := io.WriteString(c.w, line+"\r\n"); err != nil {
		return err
	}
	if c.zw != nil {
		return c.zw.Flush()
	}
	return nil
}

// readLine reads one response line; a deflate stream cannot resume after a
// read timeout, so the deadline is the test's, not a poll's.
func (c *idleClient) readLine() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	l, err := c.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// cmd runs one command and returns its untagged lines, failing unless it
// answers OK.
func (c *idleClient) cmd(command string) ([]string, error) {
	c.n++
	tag := fmt.Sprintf("m%d", c.n)
	if err := c.send(tag + " " + command); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		l, err := c.readLine()
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return nil, fmt.Errorf("%s: %s", command, l)
			}
			return untagged, nil
		}
		untagged = append(untagged, l)
	}
}

// Many idle sessions, all pushed to: 400 sessions of 8 accounts across both
// access pods sit in IDLE (RFC 2177), a third of them compressed (RFC 4978)
// and a fifth with a search context (RFC 5267), while each account gets
// three deliveries and, from another session, a flag change. Every session
// must be told all of it while idling ("the server is free to send
// untagged EXISTS, EXPUNGE, and other messages at any time"): the EXISTS
// of the new count, the FETCH of the flag, and for contexts the ADDTO of
// the three new unseen messages. An idle session waits without a goroutine
// of its own; this is what shows the wake-up path holds at a few hundred
// sessions per pod, compressed or not.
func TestIMAPManyIdleSessionsGetPushes(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const accounts, perAccount = 8, 50
	user := func(a int) string { return fmt.Sprintf("idle%d@example.test", a) }
	for a := 0; a < accounts; a++ {
		c.CreateAccount(user(a), "idle-secret")
		c.Deliver([]string{user(a)}, []byte("Subject: first\r\n\r\nfirst\r\n")) // UID 1
	}

	type idler struct {
		*idleClient
		account  int
		context  bool
		compress bool
	}
	var idlers []*idler
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, accounts*perAccount)
	for a := 0; a < accounts; a++ {
		for i := 0; i < perAccount; i++ {
			wg.Add(1)
			go func(a, i int) {
				defer wg.Done()
				// One source address per 25 sessions keeps each under the
				// per-address limit of a pod.
				source := fmt.Sprintf("127.0.%d.%d", 1+a, 2+i/25)
				d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
				conn, err := tls.DialWithDialer(d, "tcp", c.Access[i%2].IMAPS, &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					errs <- err
					return
				}
				t.Cleanup(func() { conn.Close() })
				ic := &idler{idleClient: &idleClient{t: t, conn: conn, r: bufio.NewReader(conn), w: conn}, account: a,
					context: i%5 == 0, compress: i%3 == 0}
				if _, err := ic.readLine(); err != nil { // greeting
					errs <- err
					return
				}
				if _, err := ic.cmd(fmt.Sprintf("LOGIN %s idle-secret", user(a))); err != nil {
					errs <- err
					return
				}
				if ic.compress {
					if _, err := ic.cmd("COMPRESS DEFLATE"); err != nil {
						errs <- err
						return
					}
					ic.zw, _ = flate.NewWriter(conn, flate.BestSpeed)
					ic.w, ic.r = ic.zw, bufio.NewReader(flate.NewReader(conn))
				}
				if _, err := ic.cmd("SELECT INBOX"); err != nil {
					errs <- err
					return
				}
				if ic.context {
					if _, err := ic.cmd("UID SEARCH RETURN (UPDATE) UNSEEN"); err != nil {
						errs <- err
						return
					}
				}
				if err := ic.send("I IDLE"); err != nil {
					errs <- err
					return
				}
				if l, err := ic.readLine(); err != nil || !strings.HasPrefix(l, "+") {
					errs <- fmt.Errorf("IDLE: %q %v", l, err)
					return
				}
				mu.Lock()
				idlers = append(idlers, ic)
				mu.Unlock()
			}(a, i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Each idler reads until it has heard everything, then ends IDLE.
	results := make(chan error, len(idlers))
	for _, ic := range idlers {
		go func() {
			exists, flagged := false, false
			added := map[string]bool{}
			for !exists || !flagged || ic.context && len(added) < 3 {
				l, err := ic.readLine()
				if err != nil {
					results <- fmt.Errorf("account %d (compress %v, context %v): %v after exists=%v flagged=%v added=%v",
						ic.account, ic.compress, ic.context, err, exists, flagged, added)
					return
				}
				switch {
				case l == "* 4 EXISTS":
					exists = true
				case strings.HasPrefix(l, "* 1 FETCH ") && strings.Contains(l, `\Flagged`):
					flagged = true
				case strings.HasPrefix(l, `* ESEARCH (TAG "m`) && strings.Contains(l, " UID ADDTO (0 "):
					set := strings.TrimSuffix(l[strings.Index(l, " UID ADDTO (0 ")+len(" UID ADDTO (0 "):], ")")
					for _, u := range expandSet(set) {
						added[u] = true
					}
				}
			}
			if err := ic.send("DONE"); err != nil {
				results <- err
				return
			}
			for {
				l, err := ic.readLine()
				if err != nil {
					results <- err
					return
				}
				if strings.HasPrefix(l, "I ") {
					if !strings.HasPrefix(l, "I OK") {
						err = fmt.Errorf("IDLE ended with %q", l)
					}
					results <- err
					return
				}
			}
		}()
	}

	// The changes: three deliveries per account, and a flag change from a
	// session on the other side.
	for a := 0; a < accounts; a++ {
		for k := 0; k < 3; k++ {
			c.Deliver([]string{user(a)}, []byte(fmt.Sprintf("Subject: push %d\r\n\r\npush\r\n", k)))
		}
		w := csSelected(t, c, a%2, user(a), "idle-secret", "")
		w.expect(`STORE 1 +FLAGS.SILENT (\Flagged)`, "OK")
		w.expect("LOGOUT", "OK")
	}
	for range idlers {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if len(idlers) != accounts*perAccount {
		t.Errorf("%d sessions idled, want %d", len(idlers), accounts*perAccount)
	}
}

// expandSet expands a UID set such as "2:4,7" into its numbers (as text).
func expandSet(set string) []string {
	var out []string
	for _, part := range strings.Split(set, ",") {
		lo, hi, found := strings.Cut(part, ":")
		if !found {
			out = append(out, lo)
			continue
		}
		var a, b int
		fmt.Sscan(lo, &a)
		fmt.Sscan(hi, &b)
		for n := min(a, b); n <= max(a, b); n++ {
			out = append(out, fmt.Sprint(n))
		}
	}
	return out
}
