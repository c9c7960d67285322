package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// FuzzIMAPSession feeds arbitrary bytes to a logged-in IMAP session on a
// real cluster: the server must answer or hang up, never hang or crash, and
// keep serving others. Run long with:
//
//	go test -run '^$' -fuzz FuzzIMAPSession -fuzztime 10m ./test/e2e
func FuzzIMAPSession(f *testing.F) {
	for _, seed := range []string{
		"a SELECT INBOX\r\nb FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[])\r\n",
		"a SELECT INBOX\r\nb UID SEARCH OR SUBJECT x NOT SEEN\r\nc STORE 1 +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n",
		"a LIST \"\" \"*\" RETURN (STATUS (MESSAGES SIZE))\r\nb CREATE x/y\r\nc RENAME x z\r\nd DELETE z/y\r\n",
		"a APPEND INBOX {3+}\r\nabc\r\nb IDLE\r\nDONE\r\n",
		"a SELECT INBOX\r\nb FETCH 1 (BODY[1.2.3.MIME]<0.5> BINARY[1])\r\n",
		"a SEARCH RETURN (SAVE) ALL\r\nb FETCH $ (UID)\r\n", "\x00\xff{99999999}\r\n", "a " + strings.Repeat("(", 200) + "\r\n",
		"a SELECT INBOX\r\nb NOTIFY SET STATUS (SELECTED (MessageNew (UID ENVELOPE) MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge MailboxName))\r\nc APPEND Sent {3+}\r\nabc\r\nd CREATE n\r\ne IDLE\r\nDONE\r\nf NOTIFY NONE\r\n",
	} {
		f.Add(seed)
	}
	c := cluster.Start(f, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--max-conns-per-ip", "100000"}})
	c.CreateAccount("fuzz@example.test", "fuzz-secret")
	c.Deliver([]string{"fuzz@example.test"}, []byte(multipartMsg))
	addr := c.Access[0].IMAPS
	f.Fuzz(func(t *testing.T, input string) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r.ReadString('\n')
		conn.Write([]byte("L LOGIN fuzz@example.test fuzz-secret\r\n"))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if strings.HasPrefix(l, "L OK") {
				break
			}
		}
		go conn.Write([]byte(input + "\r\nDONE\r\nZ LOGOUT\r\n")) // write while reading
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, err := r.ReadString('\n'); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					// A literal announced in the input may legitimately wait
					// for more bytes: the server must still hang up then.
					if !strings.Contains(input, "{") {
						t.Fatalf("session hung on %q", input)
					}
				}
				break
			}
		}
		if strings.Contains(c.Access[0].Log(), "panic") {
			t.Fatalf("the server panicked on %q", input)
		}
	})
}
