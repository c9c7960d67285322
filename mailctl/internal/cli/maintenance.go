package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A backup directory holds:
//
//	keys        the etcd keys, as length-delimited BackupKeys messages
//	objects/    one file per object of the body store, named by its key
//	manifest.json  written last: a directory without it is an unfinished backup
const (
	backupKeys     = "keys"
	backupObjects  = "objects"
	backupManifest = "manifest.json"
)

// manifestFile is manifest.json.
type manifestFile struct {
	Revision      int64     `json:"revision"`
	Prefix        string    `json:"prefix"`
	Keys          uint64    `json:"keys"`
	Bodies        uint64    `json:"bodies"`
	Objects       uint64    `json:"objects"` // bodies and summaries written
	BodiesMissing uint64    `json:"bodies_missing"`
	Created       time.Time `json:"created"`
	Seconds       float64   `json:"seconds"`
}

// fsck runs the storage tier's consistency check.
func (c *clients) fsck(ctx context.Context, args []string, out io.Writer) error {
	fl := flag.NewFlagSet("fsck", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	repair := fl.Bool("repair", false, "fix counters, reference counts and orphans")
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 {
		return usageError("usage: fsck [--repair]")
	}
	stream, err := storagev1.NewMaintenanceServiceClient(c.conn).Check(ctx, &storagev1.CheckRequest{Repair: *repair})
	if err != nil {
		return err
	}
	var findings []*storagev1.Finding
	var sum *storagev1.CheckSummary
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if f := resp.GetFinding(); f != nil {
			findings = append(findings, f)
			if !c.json {
				fmt.Fprintln(out, findingLine(f))
			}
		}
		if s := resp.GetSummary(); s != nil {
			sum = s
		}
	}
	if sum == nil {
		return errors.New("the check ended without a summary")
	}
	if c.json {
		opts := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
		parts := []json.RawMessage{}
		for _, f := range findings {
			b, _ := opts.Marshal(f)
			parts = append(parts, b)
		}
		s, _ := opts.Marshal(sum)
		b, err := json.MarshalIndent(map[string]any{"findings": parts, "summary": json.RawMessage(s)}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
	} else {
		fmt.Fprintf(out, "checked at revision %d: %d accounts, %d mailboxes, %d messages, %d queue items, %d bodies, %d objects; %d findings, %d repaired\n",
			sum.Revision, sum.Accounts, sum.Mailboxes, sum.Messages, sum.QueueItems, sum.Bodies, sum.Objects, sum.Findings, sum.Repaired)
	}
	if left := sum.Findings - sum.Repaired; left > 0 {
		return fmt.Errorf("%d inconsistencies left", left)
	}
	return nil
}

func findingLine(f *storagev1.Finding) string {
	kind := strings.ToLower(strings.TrimPrefix(f.Kind.String(), "KIND_"))
	where := f.Key
	if f.AccountId != "" {
		where = "account " + f.AccountId
		if f.MailboxId != "" {
			where += " mailbox " + f.MailboxId
		}
		where += " (" + f.Key + ")"
	}
	line := fmt.Sprintf("%s: %s: %s", kind, where, f.Detail)
	if f.Repaired {
		line += " [repaired]"
	}
	return line
}

// backup writes a backup of the whole cell into a new directory.
func (c *clients) backup(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 1 {
		return usageError("usage: backup DIR")
	}
	dir := args[0]
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: a backup goes into a new directory", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, backupObjects), 0o700); err != nil {
		return err
	}
	start := time.Now()
	stream, err := storagev1.NewMaintenanceServiceClient(c.conn).Backup(ctx, &storagev1.BackupRequest{})
	if err != nil {
		return err
	}
	keysFile, err := os.OpenFile(filepath.Join(dir, backupKeys), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer keysFile.Close()
	var m manifestFile
	var obj *os.File
	closeObject := func() error {
		if obj == nil {
			return nil
		}
		err := obj.Sync()
		if cerr := obj.Close(); err == nil {
			err = cerr
		}
		obj = nil
		return err
	}
	defer closeObject()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch p := resp.Part.(type) {
		case *storagev1.BackupPart_Keys:
			if _, err := protodelim.MarshalTo(keysFile, p.Keys); err != nil {
				return err
			}
		case *storagev1.BackupPart_Manifest:
			m.Revision, m.Prefix, m.Keys, m.Bodies = p.Manifest.Revision, p.Manifest.Prefix, p.Manifest.Keys, p.Manifest.Objects
			if err := keysFile.Sync(); err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "keys at revision %d: %d; copying %d bodies\n", m.Revision, m.Keys, m.Bodies)
		case *storagev1.BackupPart_Object:
			if err := closeObject(); err != nil {
				return err
			}
			path, err := objectPath(dir, p.Object.Key)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if obj, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
				return err
			}
			m.Objects++
		case *storagev1.BackupPart_Chunk:
			if obj == nil {
				return errors.New("backup stream: data before an object")
			}
			if _, err := obj.Write(p.Chunk); err != nil {
				return err
			}
		}
	}
	if err := closeObject(); err != nil {
		return err
	}
	if err := keysFile.Close(); err != nil {
		return err
	}
	bodies, err := countBodies(dir)
	if err != nil {
		return err
	}
	m.BodiesMissing = m.Bodies - min(m.Bodies, bodies)
	m.Created, m.Seconds = start.UTC(), time.Since(start).Seconds()
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeSynced(filepath.Join(dir, backupManifest), append(b, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(out, "backup of revision %d in %s: %d keys, %d bodies, %d objects, %.1f s\n", m.Revision, dir, m.Keys, bodies, m.Objects, m.Seconds)
	if m.BodiesMissing > 0 {
		return fmt.Errorf("%d referenced bodies are missing from the body store (run mailctl fsck)", m.BodiesMissing)
	}
	return nil
}

// restore loads a backup directory into an empty cell (run fsck after it).
func (c *clients) restore(ctx context.Context, args []string, out io.Writer) error {
	fl := flag.NewFlagSet("restore", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	allowMissing := fl.Bool("allow-missing", false, "restore a backup that lacks bodies its keys reference")
	if err := fl.Parse(reorder(fl, args)); err != nil || fl.NArg() != 1 {
		return usageError("usage: restore [--allow-missing] DIR")
	}
	dir := fl.Arg(0)
	b, err := os.ReadFile(filepath.Join(dir, backupManifest))
	if err != nil {
		return fmt.Errorf("%s is not a finished backup: %w", dir, err)
	}
	var m manifestFile
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", backupManifest, err)
	}
	if m.BodiesMissing > 0 && !*allowMissing {
		return fmt.Errorf("%s lacks %d bodies its keys reference (the backup said so when it ran): restore it anyway with --allow-missing, and fsck will name the messages", dir, m.BodiesMissing)
	}
	start := time.Now()
	stream, err := storagev1.NewMaintenanceServiceClient(c.conn).Restore(ctx)
	if err != nil {
		return err
	}
	send := func(req *storagev1.BackupPart) error {
		if err := stream.Send(req); err != nil {
			_, rerr := stream.CloseAndRecv() // the server's reason
			if rerr != nil {
				return rerr
			}
			return err
		}
		return nil
	}
	keysFile, err := os.Open(filepath.Join(dir, backupKeys))
	if err != nil {
		return err
	}
	defer keysFile.Close()
	r := bufio.NewReaderSize(keysFile, 1<<20)
	for {
		keys := &storagev1.BackupKeys{}
		if err := (protodelim.UnmarshalOptions{MaxSize: 64 << 20}).UnmarshalFrom(r, keys); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", backupKeys, err)
		}
		if err := send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Keys{Keys: keys}}); err != nil {
			return err
		}
	}
	if err := send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Manifest{Manifest: &storagev1.BackupManifest{
		Revision: m.Revision, Prefix: m.Prefix, Keys: m.Keys, Objects: m.Bodies}}}); err != nil {
		return err
	}
	root := filepath.Join(dir, backupObjects)
	buf := make([]byte, 256<<10)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		if err := send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Object{Object: &storagev1.BackupObject{
			Key: filepath.ToSlash(rel), Size: info.Size()}}}); err != nil {
			return err
		}
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				if err := send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Chunk{Chunk: buf[:n]}}); err != nil {
					return err
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "restored revision %d from %s: %d keys (%d kept as the target had them), %d objects, %.1f s\n",
		m.Revision, dir, resp.Keys, resp.KeysKept, resp.Objects, time.Since(start).Seconds())
	return nil
}

// objectPath is where the object key goes under dir, refusing keys that
// would leave it.
func objectPath(dir, key string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(key))
	if key == "" || filepath.IsAbs(clean) || clean == "." || strings.HasPrefix(clean, "..") {
		return "", fmt.Errorf("backup stream: invalid object key %q", key)
	}
	return filepath.Join(dir, backupObjects, clean), nil
}

// countBodies counts the body objects (not summaries) of a backup.
func countBodies(dir string) (uint64, error) {
	var n uint64
	root := filepath.Join(dir, backupObjects)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join(root, "summaries") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	return n, err
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
