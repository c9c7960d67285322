package service

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A version 2 entry keeps everything of a message but its envelope, and
// flags come back in normalizeFlags' order, system flags as bits.
func TestEntryV2RoundTrip(t *testing.T) {
	flags, err := normalizeFlags([]string{"work", `\Seen`, "$Label1", `\deleted`, "Zed", `\Draft`})
	if err != nil {
		t.Fatal(err)
	}
	msg := &storagev1.Message{
		Uid: 42, Modseq: 9001, Flags: flags, Size: 12345, CrlfSize: 12400, HeaderSize: 812,
		InternalDate: &timestamppb.Timestamp{Seconds: 1_790_000_000},
		BodyKey:      newBodyKey(time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)),
		Envelope:     &storagev1.Envelope{Subject: "not stored in the entry"},
	}
	b := encodeEntry(msg)
	if b[0] != entryV2 || isEntryV1(b) {
		t.Fatalf("encoded entry starts with %#x", b[0])
	}
	got, err := decodeEntry(42, b)
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(msg).(*storagev1.Message)
	want.Envelope = nil
	if !proto.Equal(got, want) {
		t.Fatalf("round trip:\n got  %v\n want %v", got, want)
	}
	if len(b) > 64 {
		t.Errorf("entry is %d bytes; the mutable part of a message should be a few dozen", len(b))
	}
	// A key of another form is kept as text.
	msg.BodyKey = "2025/01/01/19e0-abc"
	if got, err := decodeEntry(42, encodeEntry(msg)); err != nil || got.BodyKey != msg.BodyKey {
		t.Fatalf("body key %q came back as %q (%v)", msg.BodyKey, got.GetBodyKey(), err)
	}
	// No flags at all stays nil, as a fresh version 1 entry had it.
	msg.Flags = nil
	if got, _ := decodeEntry(42, encodeEntry(msg)); got.Flags != nil {
		t.Fatalf("flags %v, want none", got.Flags)
	}
}

// A version 1 entry (a whole storagev1.Message) still decodes, envelope
// included, and no protobuf encoding is mistaken for version 2.
func TestEntryV1StillDecodes(t *testing.T) {
	v1 := &storagev1.Message{Uid: 7, Modseq: 3, Flags: []string{`\Seen`}, Size: 10, BodyKey: "2025/01/01/x-y",
		Envelope: &storagev1.Envelope{Subject: "old"}}
	b, err := proto.Marshal(v1)
	if err != nil {
		t.Fatal(err)
	}
	if !isEntryV1(b) {
		t.Fatal("a version 1 entry is taken for version 2")
	}
	got, err := decodeEntry(7, b)
	if err != nil || !proto.Equal(got, v1) {
		t.Fatalf("decoded %v (%v), want %v", got, err, v1)
	}
	// Every field of Message starts a protobuf encoding with a byte >= 0x08.
	for _, m := range []*storagev1.Message{{Modseq: 1}, {Flags: []string{"a"}}, {Size: 1}, {BodyKey: "k"}, {HeaderSize: 1}, {CrlfSize: 1}, {Envelope: &storagev1.Envelope{}}, {InternalDate: &timestamppb.Timestamp{Seconds: 1}}} {
		b, _ := proto.Marshal(m)
		if len(b) > 0 && !isEntryV1(b) {
			t.Fatalf("%v encodes starting with %#x", m, b[0])
		}
	}
}

// Packed body keys come back exactly; keys not in newBodyKey's canonical
// form are not packed.
func TestPackBodyKey(t *testing.T) {
	for i := 0; i < 1000; i++ {
		key := newBodyKey(time.Unix(int64(i)*37*86400+int64(i)*3607, 0)) // 1970 to 2071
		packed, ok := packBodyKey(key)
		if !ok || len(packed) != 12 {
			t.Fatalf("%q not packed (%d bytes)", key, len(packed))
		}
		if got, err := unpackBodyKey(packed); err != nil || got != key {
			t.Fatalf("%q came back as %q (%v)", key, got, err)
		}
	}
	for _, key := range []string{"", "20261129/abcdefghijklmnoP", "20261329/abcdefghijklmnop", "20261129-abcdefghijklmnop",
		"20261129/abcdefghijklmno1", "2026/11/29/187c-abcdef", "20261129/abcdefghijklmnopq"} {
		if packed, ok := packBodyKey(key); ok {
			t.Errorf("%q packed as %x", key, packed)
		}
	}
}
