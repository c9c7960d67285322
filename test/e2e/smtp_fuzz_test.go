package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
)

// FuzzSMTPSession feeds arbitrary bytes to the MX after EHLO and to a
// submission session after AUTH, on a real cluster: each server must answer
// or hang up (within its command timeout), never hang or crash, and keep
// serving new sessions. Run long with:
//
//	go test -run '^$' -fuzz FuzzSMTPSession -fuzztime 10m ./test/e2e
func FuzzSMTPSession(f *testing.F) {
	for _, seed := range []string{
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<fuzz@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"MAIL FROM:<fuzz@example.test> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<fuzz@example.test>\r\nBDAT 5 LAST\r\nhello",
		"MAIL FROM:<>\r\nRCPT TO:<FUZZ+tag@Example.Test.>\r\nDATA\r\n..leading dot\r\nbare\nLF\rCR\r\n.\r\nRSET\r\n",
		"MAIL FROM:<fuzz@example.test>\r\nRCPT TO:<x@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@remote.test\r\nDATA\r\nFrom: fuzz@example.test\r\nFrom: other@example.test\r\n\r\n.\r\n",
		"VRFY root\r\nEXPN list\r\nHELP\r\nNOOP\r\nSTARTTLS\r\n", "\x00\xff\r\n" + strings.Repeat("A", 5000) + "\r\n",
		"AUTH PLAIN =\r\nAUTH LOGIN\r\n*\r\n", "MAIL FROM:<" + strings.Repeat("a", 300) + "@example.org>\r\n",
	} {
		f.Add(seed)
	}
	dns, err := dnstest.Start()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(dns.Close)
	limits := []string{"--max-conns-per-ip", "100000", "--command-timeout", "1s"}
	c := cluster.Start(f, binDir, minioServer, cluster.Options{Inbound: 1, Submission: 1, DNS: dns.Addr,
		InboundArgs: limits, SubmissionArgs: append(limits, "--deliver=false")})
	c.CreateAccount("fuzz@example.test", "fuzz-secret")
	plain := base64.StdEncoding.EncodeToString([]byte("\x00fuzz@example.test\x00fuzz-secret"))

	// session runs one SMTP session: the banner, the given opening, then
	// the input; it returns once the server hung up or said goodbye.
	session := func(t *testing.T, conn net.Conn, opening []string, input string) {
		defer conn.Close()
		r := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220") {
			t.Fatalf("banner: %q %v", l, err)
		}
		for _, cmd := range opening {
			conn.Write([]byte(cmd + "\r\n"))
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
				if l[0] >= '4' {
					t.Fatalf("%s: %q", cmd, l)
				}
				if len(l) > 3 && l[3] == ' ' {
					break
				}
			}
		}
		go conn.Write([]byte(input + "\r\nQUIT\r\n")) // write while reading
		// A command timeout of 1 s: whatever the input left unfinished, the
		// server hangs up well within this.
		conn.SetDeadline(time.Now().Add(8 * time.Second))
		for {
			if _, err := r.ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("session hung on %q", input)
				}
				return
			}
		}
	}
	f.Fuzz(func(t *testing.T, input string) {
		mx, err := net.Dial("tcp", c.Inbound[0].SMTP)
		if err != nil {
			t.Fatal(err)
		}
		session(t, mx, []string{"EHLO fuzz.example.org"}, input)
		sub, err := tls.Dial("tcp", c.Submission[0].Submissions, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		session(t, sub, []string{"EHLO fuzz.example.org", "AUTH PLAIN " + plain}, input)
		for _, p := range []*cluster.Process{c.Inbound[0].Process, c.Submission[0].Process} {
			if strings.Contains(p.Log(), "panic") {
				t.Fatalf("a server panicked on %q", input)
			}
		}
	})
}
