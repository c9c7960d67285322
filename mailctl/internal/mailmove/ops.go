package mailmove

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Progress reports what an import or export has done (to stderr).
type Progress func(folder string, done, total int)

// ImportFolders appends every folder's messages in batches, creating the
// folders as needed and subscribing those the source had subscribed.
// With a state file (statePath not ""), messages with a Key already
// imported by an earlier run are skipped, and a batch that was in flight
// when that run stopped is looked for in the destination first.
func (s *Store) ImportFolders(ctx context.Context, folders []Folder, source, statePath string, progress Progress) (int, error) {
	st := &keyState{Source: source, Folders: map[string]*keyFolder{}}
	if statePath != "" {
		if b, err := os.ReadFile(statePath); err == nil {
			if err := json.Unmarshal(b, st); err != nil {
				return 0, fmt.Errorf("state file %s: %w", statePath, err)
			}
			if st.Source != source {
				return 0, fmt.Errorf("state file %s belongs to an import from %s, not %s", statePath, st.Source, source)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	total := 0
	for _, f := range folders {
		mb, err := s.EnsureMailbox(ctx, f.Name, f.Subscribed, storagev1.SpecialUse_SPECIAL_USE_NONE)
		if err != nil {
			return total, err
		}
		fs := st.Folders[f.Name]
		if fs == nil {
			fs = &keyFolder{Done: map[string]bool{}}
			st.Folders[f.Name] = fs
		}
		if p := fs.Pending; p != nil {
			found, err := s.findBatch(ctx, p.MailboxID, p.UIDNext, p.Sizes)
			if err != nil {
				return total, err
			}
			for _, k := range p.Keys {
				if found {
					fs.Done[k] = true
				}
			}
			fs.Pending = nil
			if err := writeState(statePath, st); err != nil {
				return total, err
			}
		}
		done, appended := 0, 0
		b := s.NewBatcher(mb.Id)
		if statePath != "" {
			b.Before = func(msgs []Message) error {
				cur, err := s.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.AccountID, MailboxId: mb.Id})
				if err != nil {
					return err
				}
				p := &keyPending{MailboxID: mb.Id, UIDNext: cur.Mailbox.UidNext}
				for _, m := range msgs {
					p.Keys = append(p.Keys, m.Key)
					p.Sizes = append(p.Sizes, m.Size)
				}
				fs.Pending = p
				return writeState(statePath, st)
			}
		}
		b.Done = func(msgs []Message, _ *storagev1.AppendMessagesResponse) error {
			for _, m := range msgs {
				if m.Key != "" {
					fs.Done[m.Key] = true
				}
			}
			fs.Pending = nil
			done += len(msgs)
			appended += len(msgs)
			total += len(msgs)
			progress(f.Name, done, len(f.Messages))
			return writeState(statePath, st)
		}
		for _, m := range f.Messages {
			if m.Key != "" && fs.Done[m.Key] {
				done++
				continue
			}
			if err := b.Add(ctx, m); err != nil {
				return total, fmt.Errorf("%s: %w", f.Name, err)
			}
		}
		if err := b.Flush(ctx); err != nil {
			return total, fmt.Errorf("%s: %w", f.Name, err)
		}
		if appended == 0 { // nothing (more) to import: say so
			progress(f.Name, done, len(f.Messages))
		}
	}
	return total, nil
}

// ImportMbox imports one mbox file into a folder, streaming it.
func (s *Store) ImportMbox(ctx context.Context, r io.Reader, folder string, progress Progress) (int, error) {
	mb, err := s.EnsureMailbox(ctx, folder, false, storagev1.SpecialUse_SPECIAL_USE_NONE)
	if err != nil {
		return 0, err
	}
	done := 0
	b := s.NewBatcher(mb.Id)
	b.Done = func(msgs []Message, _ *storagev1.AppendMessagesResponse) error {
		done += len(msgs)
		progress(folder, done, -1)
		return nil
	}
	if err := ReadMbox(r, func(m Message) error { return b.Add(ctx, m) }); err != nil {
		return done, err
	}
	return done, b.Flush(ctx)
}

// ExportMaildir writes every mailbox of the account into a new Maildir++
// tree at root.
func (s *Store) ExportMaildir(ctx context.Context, root string, progress Progress) (int, error) {
	w, err := NewMaildirWriter(root)
	if err != nil {
		return 0, err
	}
	total, err := s.export(ctx, progress, func(mb *storagev1.Mailbox) (func(*storagev1.Message, io.Reader) error, func() error, error) {
		f, err := w.Folder(mb.Name, mb.Subscribed)
		if err != nil {
			return nil, nil, err
		}
		f.Warn = s.Warn
		return func(m *storagev1.Message, body io.Reader) error {
			return f.Add(body, m.Flags, m.InternalDate.AsTime())
		}, func() error { return nil }, nil
	})
	if err != nil {
		return total, err
	}
	return total, w.Close()
}

// ExportMbox writes every mailbox into its own mbox file under dir:
// "INBOX.mbox", "Folder.mbox", "Folder/Sub.mbox".
func (s *Store) ExportMbox(ctx context.Context, dir string, progress Progress) (int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	return s.export(ctx, progress, func(mb *storagev1.Mailbox) (func(*storagev1.Message, io.Reader) error, func() error, error) {
		path := MboxPath(dir, mb.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, err
		}
		file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, err
		}
		w := NewMboxWriter(file)
		return func(m *storagev1.Message, body io.Reader) error {
				return w.Add(body, m.Flags, m.InternalDate.AsTime())
			}, func() error {
				err := w.Flush()
				if err == nil {
					err = file.Sync()
				}
				if cerr := file.Close(); err == nil {
					err = cerr
				}
				return err
			}, nil
	})
}

// MboxPath is where ExportMbox writes a folder.
func MboxPath(dir, folder string) string {
	parts := strings.Split(folder, Delimiter)
	for i, p := range parts {
		if p == "" || p == "." || p == ".." {
			parts[i] = strings.ReplaceAll(p, ".", "%2e") + "_"
		}
	}
	return filepath.Join(dir, filepath.Join(parts...)+".mbox")
}

func (s *Store) export(ctx context.Context, progress Progress,
	open func(*storagev1.Mailbox) (add func(*storagev1.Message, io.Reader) error, done func() error, err error)) (int, error) {
	list, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, mb := range list.Mailboxes {
		add, done, err := open(mb)
		if err != nil {
			return total, err
		}
		n := 0
		err = s.EachMessage(ctx, mb.Id, 0, func(m *storagev1.Message) error {
			body, err := s.Body(ctx, mb.Id, m.Uid)
			if err != nil {
				return fmt.Errorf("%s UID %d: %w", mb.Name, m.Uid, err)
			}
			err = add(m, body)
			body.Close()
			if err != nil {
				return fmt.Errorf("%s UID %d: %w", mb.Name, m.Uid, err)
			}
			n++
			total++
			if n%500 == 0 {
				progress(mb.Name, n, int(mb.Messages))
			}
			return nil
		})
		if derr := done(); err == nil {
			err = derr
		}
		if err != nil {
			return total, err
		}
		progress(mb.Name, n, n)
	}
	return total, nil
}
