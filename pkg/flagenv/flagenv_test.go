package flagenv

import (
	"flag"
	"testing"
)

func TestEnvironmentSetsFlagsAndCommandLineWins(t *testing.T) {
	t.Setenv("MAILFLEET_ETCD_ENDPOINTS", "http://env:2379")
	t.Setenv("MAILFLEET_MAX_SIZE", "42")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	endpoints := fs.String("etcd-endpoints", "default", "")
	size := fs.Int("max-size", 1, "")
	other := fs.String("other", "default", "")
	if err := Parse(fs, "MAILFLEET", []string{"--max-size", "7"}); err != nil {
		t.Fatal(err)
	}
	if *endpoints != "http://env:2379" || *size != 7 || *other != "default" {
		t.Fatalf("got %q %d %q", *endpoints, *size, *other)
	}
	t.Setenv("MAILFLEET_MAX_SIZE", "not-a-number")
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int("max-size", 1, "")
	if err := Parse(fs2, "MAILFLEET", nil); err == nil {
		t.Fatal("a malformed environment value was accepted")
	}
}
