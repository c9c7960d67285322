package mailmove

import (
	"io"
	"net"
	"testing"
)

// rev1Conn hides IMAP4rev2 in CAPABILITY responses and codes, and never
// touches a literal, even one that looks like a CAPABILITY response.
func TestRev1ConnHidesRev2(t *testing.T) {
	server, client := net.Pipe()
	literal := "* CAPABILITY IMAP4rev1 IMAP4rev2\r\n"
	go func() {
		io.WriteString(server, "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LIST-EXTENDED] hi\r\n"+
			"* CAPABILITY IMAP4rev1 IMAP4REV2 SPECIAL-USE\r\n"+
			"* 1 FETCH (UID 5 BODY[] {35}\r\n"+literal+")\r\n"+
			"* 2 FETCH (BODY[] {0}\r\n)\r\n")
		server.Close()
	}()
	got, err := io.ReadAll(newRev1Conn(client, []byte("* OK greeting\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := "* OK greeting\r\n" +
		"* OK [CAPABILITY IMAP4rev1 LIST-EXTENDED] hi\r\n" +
		"* CAPABILITY IMAP4rev1 SPECIAL-USE\r\n" +
		"* 1 FETCH (UID 5 BODY[] {35}\r\n" + literal + ")\r\n" +
		"* 2 FETCH (BODY[] {0}\r\n)\r\n"
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}
