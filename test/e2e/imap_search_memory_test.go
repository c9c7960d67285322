package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// searchBigMessage is a text message of about size bytes whose last line
// holds needle, so that a SEARCH BODY must read all of it.
func searchBigMessage(size int, needle string) []byte {
	var b bytes.Buffer
	b.WriteString("From: big@example.org\r\nTo: s@example.test\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n")
	line := strings.Repeat("lorem ipsum dolor sit amet ", 3) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString(needle + "\r\n")
	return b.Bytes()
}

// SEARCH BODY and TEXT of many sessions at once share a pod-wide memory
// budget (--search-memory-mb): 16 clients searching a 6 MB message with a
// budget of 8 MiB take turns, and every one gets the right answer.
func TestIMAPConcurrentBodySearchesShareMemory(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--search-memory-mb", "8", "--max-conns-per-ip", "40"}})
	c.CreateAccount("search@example.test", "search-secret")
	c.Deliver([]string{"search@example.test"}, []byte("From: a@example.org\r\nSubject: small\r\n\r\nnothing here\r\n"))
	c.Deliver([]string{"search@example.test"}, searchBigMessage(6<<20, "the needle at the end"))
	var clients []*imapclient.Client
	for i := 0; i < 16; i++ {
		clients = append(clients, dialIMAP(t, c.Access[0].IMAPS, nil))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cl.Login("search@example.test", "search-secret").Wait(); err != nil {
				errs <- err
				return
			}
			if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
				errs <- err
				return
			}
			crit := &imap.SearchCriteria{Body: []string{"NEEDLE AT THE END"}}
			if i%2 == 1 {
				crit = &imap.SearchCriteria{Text: []string{"needle at the"}}
			}
			data, err := cl.UIDSearch(crit, nil).Wait()
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			if got := data.AllUIDs(); len(got) != 1 || got[0] != 2 {
				errs <- fmt.Errorf("session %d: SEARCH found %v, want [2]", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// BenchmarkConcurrentBodySearch: 16 IMAP sessions SEARCH BODY of one 30 MB
// message at once, with the default search memory budget (256 MiB) and
// with it out of the way; prints the time and the access process's peak
// resident memory. Nothing is asserted about either.
//
//	go test -run '^$' -bench ConcurrentBodySearch -benchtime 1x ./test/e2e/
func BenchmarkConcurrentBodySearch(b *testing.B) {
	for _, run := range []struct{ name, mb string }{{"budget-256MiB", "256"}, {"budget-unbounded", "1000000"}} {
		b.Run(run.name, func(b *testing.B) {
			c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--search-memory-mb", run.mb, "--max-conns-per-ip", "40"}})
			c.CreateAccount("search@example.test", "search-secret")
			c.Deliver([]string{"search@example.test"}, searchBigMessage(30<<20, "the needle at the end"))
			pid := bmbAccessPID(b, c)
			var clients []*imapclient.Client
			for i := 0; i < 16; i++ {
				cl := bmbDial(b, c.Access[0].IMAPS)
				bmbLogin(b, cl, "search@example.test", "search-secret")
				bmbSelect(b, cl, 1)
				clients = append(clients, cl)
			}
			before := bmbStatusKiB(pid, "VmRSS:")
			peak := bmbSampleRSS(pid)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, cl := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					data, err := cl.UIDSearch(&imap.SearchCriteria{Body: []string{"needle at the end"}}, nil).Wait()
					if err != nil || len(data.AllUIDs()) != 1 {
						b.Errorf("SEARCH BODY: %v %v", data, err)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			top := peak()
			b.ReportMetric(float64(top)/1024, "MiB-access-peak-RSS")
			fmt.Printf("%s: 16 concurrent SEARCH BODY of a 30 MB message: access VmRSS before %.0f MiB, peak %.0f MiB, VmHWM %.0f MiB\n",
				run.name, float64(before)/1024, float64(top)/1024, float64(bmbStatusKiB(pid, "VmHWM:"))/1024)
		})
	}
}
