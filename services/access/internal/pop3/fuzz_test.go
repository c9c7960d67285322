package pop3

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary bytes to a logged-in session: whatever comes,
// the server answers or hangs up, never panics (a panic fails the test via
// the recover in Serve, which logs, and the check below), and stays usable.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"STAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nTOP 2 3\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		"LIST 99999999999999999999\r\nTOP 1 -1\r\nDELE 0\r\n",
		"AUTH PLAIN\r\n*\r\n", "\x00\xff\r\n", strings.Repeat("A", 3000) + "\r\n",
		"CAPA\nNOOP\n", "RETR 1\r\nRETR 2\r\n",
	} {
		f.Add(seed)
	}
	ts := startServer(f, func(c *Config) {
		c.Logger = panicLogger(f)
		c.AllowInsecureAuth = true // plaintext keeps each run fast
		c.MaxConnsPerIP = 1000
	})
	f.Fuzz(func(t *testing.T, input string) {
		conn, err := net.Dial("tcp", ts.plain)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		r.ReadString('\n')
		conn.Write([]byte("USER bob@example.test\r\nPASS bobpw\r\n"))
		r.ReadString('\n')
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("login failed: %q", l)
		}
		// Whatever the input, a final QUIT must end the session promptly.
		// Write while reading: a large input answered by large replies
		// would otherwise fill both directions' buffers.
		go conn.Write([]byte(input + "\r\nQUIT\r\n"))
		for {
			if _, err := r.ReadString('\n'); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("session hung on input %q", input)
				}
				break
			}
		}
	})
}
