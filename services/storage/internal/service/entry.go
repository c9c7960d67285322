package service

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Index entries are stored in two layouts. Version 1 is a whole
// storagev1.Message, envelope included. Version 2 (every entry written
// now) is the byte entryV2 followed by a records.Entry: only what changes
// and what listings need, about a tenth of the bytes. No protobuf encoding
// starts with a byte below 0x08 (field number 0 does not exist), so the
// first byte tells them apart. Readers take both; the sweeper's replica
// rewrites version 1 entries (migrate.go).
const entryV2 = 0x02

// systemFlagBits gives each IMAP system flag its bit in Entry.system_flags.
var systemFlagBits = []struct {
	flag string
	bit  uint32
}{
	{`\Seen`, 1}, {`\Answered`, 2}, {`\Flagged`, 4}, {`\Deleted`, 8}, {`\Draft`, 16},
}

// encodeEntry encodes msg as a version 2 entry. The envelope, structure and
// UID (which is in the key) are not stored.
func encodeEntry(msg *storagev1.Message) []byte {
	e := &records.Entry{
		Modseq:     msg.Modseq,
		Size:       msg.Size,
		HeaderSize: msg.HeaderSize,
	}
	if packed, ok := packBodyKey(msg.BodyKey); ok {
		e.BodyKeyPacked = packed
	} else {
		e.BodyKey = msg.BodyKey
	}
	if msg.CrlfSize > msg.Size {
		e.BareLf = msg.CrlfSize - msg.Size
	}
	if msg.InternalDate != nil {
		e.InternalDate = msg.InternalDate.Seconds
	}
	if msg.SaveDate != nil {
		e.SaveDate = msg.SaveDate.Seconds
	}
flags:
	for _, f := range msg.Flags {
		for _, sf := range systemFlagBits {
			if f == sf.flag {
				e.SystemFlags |= sf.bit
				continue flags
			}
		}
		e.Keywords = append(e.Keywords, f)
	}
	b, err := proto.MarshalOptions{}.MarshalAppend([]byte{entryV2}, e)
	if err != nil {
		panic(fmt.Sprintf("marshal entry: %v", err))
	}
	return b
}

// decodeEntry decodes the entry of uid in either layout.
func decodeEntry(uid uint32, value []byte) (*storagev1.Message, error) {
	if isEntryV1(value) {
		msg := &storagev1.Message{}
		if err := proto.Unmarshal(value, msg); err != nil {
			return nil, fmt.Errorf("index entry %d: %w", uid, err)
		}
		msg.Uid = uid
		return msg, nil
	}
	e := &records.Entry{}
	if err := proto.Unmarshal(value[1:], e); err != nil {
		return nil, fmt.Errorf("index entry %d: %w", uid, err)
	}
	msg := &storagev1.Message{
		Uid:          uid,
		Modseq:       e.Modseq,
		Size:         e.Size,
		CrlfSize:     e.Size + e.BareLf,
		HeaderSize:   e.HeaderSize,
		InternalDate: &timestamppb.Timestamp{Seconds: e.InternalDate},
		BodyKey:      e.BodyKey,
	}
	if e.SaveDate != 0 {
		msg.SaveDate = &timestamppb.Timestamp{Seconds: e.SaveDate}
	}
	if len(e.BodyKeyPacked) > 0 {
		key, err := unpackBodyKey(e.BodyKeyPacked)
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", uid, err)
		}
		msg.BodyKey = key
	}
	if e.SystemFlags != 0 || len(e.Keywords) > 0 {
		msg.Flags = make([]string, 0, len(e.Keywords)+2)
	}
	for _, sf := range systemFlagBits {
		if e.SystemFlags&sf.bit != 0 {
			msg.Flags = append(msg.Flags, sf.flag)
		}
	}
	msg.Flags = append(msg.Flags, e.Keywords...)
	sort.Strings(msg.Flags) // normalizeFlags' order
	return msg, nil
}

// isEntryV1 says whether an entry value is in the old layout.
func isEntryV1(value []byte) bool { return len(value) == 0 || value[0] != entryV2 }

// decodeEntryKV decodes an entry read with its key.
func decodeEntryKV(key, value []byte) (*storagev1.Message, error) {
	return decodeEntry(uidFromKey(string(key)), value)
}

// Body keys as newBodyKey makes them ("20261129/" and 16 base32 characters)
// are stored in entries as 12 bytes instead of 25 characters: every byte of
// an entry is paid once per message.
const (
	bodyKeyDay    = len("20060102")
	bodyKeyLen    = bodyKeyDay + 1 + 16
	bodyKeyRandom = 10
)

// packBodyKey packs a body key of newBodyKey's form; ok is false for any
// other key (older layouts, queue bodies), which entries keep as text.
func packBodyKey(key string) (packed []byte, ok bool) {
	if len(key) != bodyKeyLen || key[bodyKeyDay] != '/' {
		return nil, false
	}
	day, err := time.Parse("20060102", key[:bodyKeyDay])
	if err != nil {
		return nil, false
	}
	days := day.Unix() / 86400
	random, err := bodyKeyEncoding.DecodeString(key[bodyKeyDay+1:])
	if err != nil || len(random) != bodyKeyRandom || days < 0 || days > 0xffff {
		return nil, false
	}
	packed = binary.BigEndian.AppendUint16(make([]byte, 0, 2+bodyKeyRandom), uint16(days))
	packed = append(packed, random...)
	if k, err := unpackBodyKey(packed); err != nil || k != key {
		return nil, false // not in canonical form: keep the text
	}
	return packed, true
}

// unpackBodyKey turns a packed body key back into its text.
func unpackBodyKey(packed []byte) (string, error) {
	if len(packed) != 2+bodyKeyRandom {
		return "", fmt.Errorf("packed body key of %d bytes", len(packed))
	}
	day := time.Unix(int64(binary.BigEndian.Uint16(packed))*86400, 0).UTC()
	return day.Format("20060102/") + bodyKeyEncoding.EncodeToString(packed[2:]), nil
}
