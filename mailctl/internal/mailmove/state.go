package mailmove

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// crashHook ends the process between an append and the state update when
// tests ask for it: the crash a resume must survive without duplicates.
func crashHook() {
	if os.Getenv("MAILFLEET_TEST_IMPORT_CRASH_AFTER_APPEND") != "" {
		os.Exit(3)
	}
}

// writeState writes a state file durably (a new file renamed over the
// old one); nothing when path is "".
func writeState(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// findBatch says whether a batch appended from uidNext on is in the
// mailbox: consecutive UIDs with these sizes (an append is all or
// nothing, its UIDs consecutive).
func (s *Store) findBatch(ctx context.Context, mailboxID string, uidNext uint32, sizes []int64) (bool, error) {
	var got []*storagev1.Message
	err := s.EachMessage(ctx, mailboxID, max(uidNext, 1)-1, func(m *storagev1.Message) error {
		got = append(got, m)
		return nil
	})
	if err != nil {
		return false, err
	}
	for i := 0; i+len(sizes) <= len(got); i++ {
		match := true
		for j, size := range sizes {
			m := got[i+j]
			if m.Size != uint64(size) || (j > 0 && m.Uid != got[i+j-1].Uid+1) {
				match = false
				break
			}
		}
		if match {
			return true, nil
		}
	}
	return false, nil
}

// keyState is the state file of a Maildir import: per folder the keys
// (file names without flags) imported, and the batch in flight.
type keyState struct {
	Source  string                `json:"source"`
	Folders map[string]*keyFolder `json:"folders"`
}

type keyFolder struct {
	Done    map[string]bool `json:"done"`
	Pending *keyPending     `json:"pending,omitempty"`
}

type keyPending struct {
	MailboxID string   `json:"mailbox_id"`
	UIDNext   uint32   `json:"uid_next"`
	Keys      []string `json:"keys"`
	Sizes     []int64  `json:"sizes"`
}
