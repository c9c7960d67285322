package service

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// The save date (IMAP SAVEDATE, RFC 8514) survives the entry encoding to
// the second; an entry written before the field decodes without one.
func TestEntrySaveDate(t *testing.T) {
	msg := &storagev1.Message{Uid: 7, Size: 10, InternalDate: &timestamppb.Timestamp{Seconds: 1_000_000_000},
		SaveDate: &timestamppb.Timestamp{Seconds: 1_790_000_123, Nanos: 999}}
	got, err := decodeEntry(7, encodeEntry(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got.SaveDate == nil || got.SaveDate.Seconds != 1_790_000_123 {
		t.Fatalf("save date %v, want 1790000123 s", got.SaveDate)
	}
	msg.SaveDate = nil
	if got, err = decodeEntry(7, encodeEntry(msg)); err != nil || got.SaveDate != nil {
		t.Fatalf("entry without a save date decodes with %v (%v)", got.GetSaveDate(), err)
	}
}
