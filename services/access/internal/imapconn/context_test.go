package imapconn

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// RFC 5267 section 5: search-return-opt =/ modifier-context /
// modifier-partial / modifier-update; partial-range = nz-number ":"
// nz-number; command-select =/ "CANCELUPDATE" 1*(SP quoted).
func TestParseSearchContextOptions(t *testing.T) {
	d, _ := decoderOf(" RETURN (UPDATE CONTEXT COUNT PARTIAL 500:400) UNSEEN\r\n")
	a, err := d.ParseSearch(true)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Context.Update || !a.Context.Context || a.Context.Partial == nil || *a.Context.Partial != (PartialRange{400, 500}) ||
		!a.Options.ReturnCount || a.Options.ReturnAll {
		t.Errorf("options %+v %+v", a.Options, a.Context)
	}
	// UPDATE alone asks for no result data (RFC 4731's "RETURN ()" = ALL
	// is about an empty list only).
	d, _ = decoderOf(" RETURN (UPDATE) UNSEEN\r\n")
	if a, err := d.ParseSearch(true); err != nil || a.Options.ReturnAll || !a.Context.Update {
		t.Errorf("RETURN (UPDATE): %+v %v", a, err)
	}
	for _, bad := range []string{" RETURN (PARTIAL) ALL", " RETURN (PARTIAL 0:3) ALL", " RETURN (PARTIAL 1:*) ALL",
		" RETURN (PARTIAL 1:2 ALL) ALL", " RETURN (ALL PARTIAL 1:2) ALL", " RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
		" RETURN (PARTIAL -1:2) ALL", " RETURN (UPDATER) ALL"} {
		d, _ := decoderOf(bad + "\r\n")
		if _, err := d.ParseSearch(false); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	d, _ = decoderOf(` "B01" "B 02"` + "\r\n")
	if tags, err := d.ParseCancelUpdate(); err != nil || !slices.Equal(tags, []string{"B01", "B 02"}) {
		t.Errorf("CANCELUPDATE: %q %v", tags, err)
	}
	for _, bad := range []string{"", " ", " B01", ` "B01" B02`} {
		d, _ := decoderOf(bad + "\r\n")
		tags, err := d.ParseCancelUpdate()
		if err == nil {
			err = d.CRLF()
		}
		if err == nil {
			t.Errorf("CANCELUPDATE%q parsed as %q", bad, tags)
		}
	}
}

// RFC 5267 4.4: "PARTIAL 1:500" is the first 500 results; a range past
// the end gives what is there, or NIL.
func TestPartialOf(t *testing.T) {
	set := imap.UIDSet{{Start: 3, Stop: 5}, {Start: 9, Stop: 9}, {Start: 20, Stop: 29}}
	for _, tc := range []struct {
		r    PartialRange
		want string
	}{
		{PartialRange{1, 1}, "3"},
		{PartialRange{1, 3}, "3:5"},
		{PartialRange{2, 5}, "4:5,9,20"},
		{PartialRange{4, 4}, "9"},
		{PartialRange{5, 100}, "20:29"},
		{PartialRange{14, 14}, "29"},
		{PartialRange{15, 20}, ""},
	} {
		got, ok := partialOf(set, tc.r)
		s := ""
		if ok {
			s = got.String()
		}
		if s != tc.want {
			t.Errorf("PARTIAL %d:%d of %v = %q, want %q", tc.r.First, tc.r.Last, set, s, tc.want)
		}
	}
	if got, ok := partialOf(imap.SeqSet{{Start: 1, Stop: 4294967295}}, PartialRange{4294967290, 4294967295}); !ok || got.String() != "4294967290:4294967295" {
		t.Errorf("near the top: %v", got)
	}
}
