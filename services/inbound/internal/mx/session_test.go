package mx

import (
	"io"
	"strings"
	"testing"
)

// Authentication-Results fields that claim to be this server's are removed
// however the authserv-id is spelled (RFC 8601 5; a domain name: any case,
// with a trailing dot, with a comment or a version after it); others stay,
// and the body is never touched.
func TestStripForgedAuthResults(t *testing.T) {
	forged := []string{
		"Authentication-Results: mx.example.test; dmarc=pass\r\n",
		"Authentication-Results: MX.Example.Test.; dmarc=pass\r\n",
		"authentication-results:mx.example.test.;dmarc=pass\r\n",
		"Authentication-Results: (comment) mx.example.test (more) 1; dkim=pass\r\n",
		"Authentication-Results: mx.example.test;\r\n\tdmarc=pass header.from=bank.example\r\n",
	}
	kept := "Authentication-Results: other.example; spf=fail\r\n"
	for _, f := range forged {
		for _, ending := range []string{"\r\n", "\n"} {
			msg := "Subject: x" + ending + f + kept + "From: a@b.example" + ending + ending +
				"Authentication-Results: mx.example.test; in the body stays" + ending
			r, err := stripForgedAuthResults(strings.NewReader(msg), "mx.example.test")
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(r)
			want := strings.Replace(msg, f, "", 1)
			if string(out) != want {
				t.Fatalf("%q:\n got  %q\n want %q", f, out, want)
			}
		}
	}
}
