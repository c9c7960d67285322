package submit

import (
	"errors"
	"strings"
	"testing"
)

// headerSenders finds every address that claims to have sent a message,
// and refuses a second From: field (RFC 5322 3.6).
func TestHeaderSenders(t *testing.T) {
	got, err := headerSenders(strings.NewReader("From: Amy <amy@example.test>, sales@example.test\r\n" +
		"Sender: amy@example.test\r\nresent-from: r1@example.test\r\nResent-From: r2@example.test\r\nResent-Sender: r3@example.test\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.from, ",") != "amy@example.test,sales@example.test" {
		t.Fatalf("from %v", got.from)
	}
	var others []string
	for _, o := range got.others {
		others = append(others, o.field+"="+o.address)
	}
	if strings.Join(others, ",") != "Sender=amy@example.test,Resent-From=r1@example.test,Resent-From=r2@example.test,Resent-Sender=r3@example.test" {
		t.Fatalf("others %v", others)
	}
	if _, err := headerSenders(strings.NewReader("From: a@example.test\r\nfrom: b@example.test\r\n\r\n")); !errors.Is(err, errManyFrom) {
		t.Fatalf("two From: fields: %v", err)
	}
	if _, err := headerSenders(strings.NewReader("From: a@example.test\r\nSender: <<<\r\n\r\n")); !errors.Is(err, errBadSenderField) {
		t.Fatalf("a Sender: that does not parse: %v", err)
	}
}
