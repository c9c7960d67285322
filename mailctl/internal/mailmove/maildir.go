package mailmove

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ReadMaildir reads a Maildir tree in Dovecot's Maildir++ layout: the
// inbox is root itself (cur/, new/, tmp/), each other folder a directory
// ".Folder" or ".Folder.Sub" beside them, named Folder/Sub here. Flags
// come from the ":2," info suffix of file names (D F P R S T and the
// keywords a–z of the folder's dovecot-keywords); the internal date from
// the leading Unix time of the file name, or the file's mtime; messages
// are in the order of dovecot-uidlist where it names them, then by date
// and name. Messages in new/ are simply unseen. Subscriptions come from
// the file "subscriptions" (Dovecot's version 1 and 2 formats).
func ReadMaildir(root string) ([]Folder, error) {
	if _, err := os.Stat(filepath.Join(root, "cur")); err != nil {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/): %w", root, err)
	}
	subs, err := readSubscriptions(filepath.Join(root, "subscriptions"))
	if err != nil {
		return nil, err
	}
	inbox, err := readMaildirFolder(root)
	if err != nil {
		return nil, err
	}
	folders := []Folder{{Name: "INBOX", Messages: inbox}}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ".") || n == "." || n == ".." {
			continue
		}
		dir := filepath.Join(root, n)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
			continue // not a folder (a stray dot directory)
		}
		name := maildirFolderName(n[1:])
		msgs, err := readMaildirFolder(dir)
		if err != nil {
			return nil, err
		}
		folders = append(folders, Folder{Name: name, Messages: msgs})
	}
	for i := range folders {
		folders[i].Subscribed = subs[folders[i].Name] || (folders[i].Name == "INBOX" && subs["inbox"])
	}
	sort.SliceStable(folders[1:], func(i, j int) bool { return folders[1+i].Name < folders[1+j].Name })
	return folders, nil
}

// maildirFolderName turns a Maildir++ directory name (without its leading
// dot) into a folder name: "." separates levels; each level is unescaped
// as Dovecot's listescape writes it ("\2e" for a dot) and decoded from
// modified UTF-7 (RFC 3501 5.1.3), as Dovecot stores names by default.
func maildirFolderName(dir string) string {
	parts := strings.Split(dir, ".")
	for i, p := range parts {
		parts[i] = decodeMUTF7(unescapeList(p))
	}
	return strings.Join(parts, Delimiter)
}

// maildirDirName is the reverse of maildirFolderName: each level in
// modified UTF-7, dots and backslashes in a level escaped.
func maildirDirName(name string) string {
	parts := strings.Split(name, Delimiter)
	for i, p := range parts {
		p = strings.ReplaceAll(encodeMUTF7(p), `\`, `\5c`)
		parts[i] = strings.ReplaceAll(p, ".", `\2e`)
	}
	return "." + strings.Join(parts, ".")
}

func unescapeList(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readSubscriptions reads Dovecot's subscriptions file: version 2 starts
// with "V\t2" and a blank line and separates levels with a tab; version 1
// lists one name a line with the namespace's separator ("." in Maildir++).
func readSubscriptions(path string) (map[string]bool, error) {
	subs := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return subs, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	v2, first := false, true
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if first {
			first = false
			if line == "V\t2" {
				v2 = true
				continue
			}
		}
		if line == "" {
			continue
		}
		var parts []string
		if v2 {
			parts = strings.Split(line, "\t")
		} else {
			parts = strings.Split(line, ".")
		}
		for i, p := range parts {
			parts[i] = decodeMUTF7(p)
		}
		name := strings.Join(parts, Delimiter)
		if strings.EqualFold(name, "INBOX") {
			name = "INBOX"
		}
		subs[name] = true
	}
	return subs, sc.Err()
}

// readMaildirFolder lists the messages of one Maildir (cur/ and new/).
func readMaildirFolder(dir string) ([]Message, error) {
	keywords, err := readKeywords(filepath.Join(dir, "dovecot-keywords"))
	if err != nil {
		return nil, err
	}
	order, err := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	if err != nil {
		return nil, err
	}
	type entry struct {
		msg  Message
		base string
		uid  uint64
	}
	var all []entry
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dir, sub, e.Name())
			st, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			base, info := splitInfo(e.Name())
			var flags []string
			if sub == "cur" {
				flags = infoFlags(info, keywords)
			}
			date := st.ModTime()
			if t, ok := fileNameTime(base); ok {
				date = t
			}
			all = append(all, entry{base: base, uid: order[base], msg: Message{
				Flags: flags, Date: date.Truncate(time.Second), Size: st.Size(), Source: path, Key: base,
				Open: func() (io.ReadCloser, error) { return os.Open(path) },
			}})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if (a.uid != 0) != (b.uid != 0) {
			return a.uid != 0 // listed in dovecot-uidlist first
		}
		if a.uid != b.uid {
			return a.uid < b.uid
		}
		if !a.msg.Date.Equal(b.msg.Date) {
			return a.msg.Date.Before(b.msg.Date)
		}
		return a.base < b.base
	})
	msgs := make([]Message, len(all))
	for i, e := range all {
		msgs[i] = e.msg
	}
	return msgs, nil
}

// splitInfo splits a Maildir file name into its base and the flags after
// ":2," (Dovecot's maildir_separator may also be ";" or "!").
func splitInfo(name string) (base, info string) {
	for _, sep := range []string{":2,", ";2,", "!2,"} {
		if i := strings.LastIndex(name, sep); i >= 0 {
			return name[:i], name[i+len(sep):]
		}
	}
	return name, ""
}

func infoFlags(info string, keywords map[byte]string) []string {
	var flags []string
	for i := 0; i < len(info); i++ {
		c := info[i]
		if c >= 'a' && c <= 'z' {
			if kw, ok := keywords[c]; ok {
				flags = append(flags, kw)
			}
			continue
		}
		for _, m := range maildirFlags {
			if m.letter == c {
				flags = append(flags, m.flag)
			}
		}
	}
	return flags
}

// fileNameTime is the Unix time a Maildir file name starts with.
func fileNameTime(base string) (time.Time, bool) {
	end := strings.IndexByte(base, '.')
	if end <= 0 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(base[:end], 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// readKeywords reads dovecot-keywords: "N name" lines, N = 0 for 'a'.
func readKeywords(path string) (map[byte]string, error) {
	kw := map[byte]string{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return kw, nil
	}
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		n, name, ok := strings.Cut(strings.TrimRight(line, "\r"), " ")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= 26 || name == "" {
			continue
		}
		kw['a'+byte(i)] = name
	}
	return kw, nil
}

// readUIDList reads the order of dovecot-uidlist: base name → UID.
// Version 3 lines are "UID [fields] :name"; version 1 "UID name".
func readUIDList(path string) (map[string]uint64, error) {
	order := map[string]uint64{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return order, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first { // the header
			first = false
			continue
		}
		uidStr, rest, ok := strings.Cut(line, " ")
		uid, err := strconv.ParseUint(uidStr, 10, 32)
		if !ok || err != nil {
			continue
		}
		name := rest
		if i := strings.Index(rest, ":"); i >= 0 {
			name = rest[i+1:]
		} else if f := strings.Fields(rest); len(f) > 0 {
			name = f[len(f)-1]
		}
		base, _ := splitInfo(name)
		order[base] = uid
	}
	return order, sc.Err()
}

// MaildirWriter writes folders into a Maildir++ tree that Dovecot (and
// ReadMaildir) reads back: every message in cur/ named
// "<unix time>.M<n>P<pid>.mailctl,S=<size>:2,<flags>" with its mtime set
// to the internal date, keywords in each folder's dovecot-keywords (at
// most 26 a folder, as Maildir allows), subscriptions in "subscriptions".
type MaildirWriter struct {
	root string
	pid  int
	seq  int
	subs []string
}

// NewMaildirWriter creates root (which must not hold a Maildir yet).
func NewMaildirWriter(root string) (*MaildirWriter, error) {
	if _, err := os.Stat(filepath.Join(root, "cur")); err == nil {
		return nil, fmt.Errorf("%s already holds a Maildir", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	return &MaildirWriter{root: root, pid: os.Getpid()}, nil
}

// MaildirFolder is one folder being written.
type MaildirFolder struct {
	w        *MaildirWriter
	dir      string
	keywords map[string]int // lower case → index
	names    []string
	// Warn receives what could not be kept (a 27th keyword).
	Warn func(string)
}

// Folder starts a folder (creating its directories).
func (w *MaildirWriter) Folder(name string, subscribed bool) (*MaildirFolder, error) {
	dir := w.root
	if !strings.EqualFold(name, "INBOX") {
		dir = filepath.Join(w.root, maildirDirName(name))
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if dir != w.root {
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			return nil, err
		}
	}
	if subscribed {
		w.subs = append(w.subs, name)
	}
	return &MaildirFolder{w: w, dir: dir, keywords: map[string]int{}, Warn: func(string) {}}, nil
}

// Add writes one message (tmp/ first, then renamed into cur/).
func (f *MaildirFolder) Add(body io.Reader, flags []string, date time.Time) error {
	letters := []byte{}
	for _, m := range maildirFlags {
		if hasFlag(flags, m.flag) {
			letters = append(letters, m.letter)
		}
	}
	for _, kw := range keywordsOf(flags) {
		if strings.EqualFold(kw, "$Forwarded") {
			continue // the P letter
		}
		i, ok := f.keywords[strings.ToLower(kw)]
		if !ok {
			if len(f.names) == 26 {
				f.Warn(fmt.Sprintf("keyword %s not kept: a Maildir folder holds 26 keywords", kw))
				continue
			}
			i = len(f.names)
			f.keywords[strings.ToLower(kw)] = i
			f.names = append(f.names, kw)
			if err := f.writeKeywords(); err != nil {
				return err
			}
		}
		letters = append(letters, 'a'+byte(i))
	}
	sort.Slice(letters, func(i, j int) bool { return letters[i] < letters[j] })
	f.w.seq++
	tmp := filepath.Join(f.dir, "tmp", fmt.Sprintf("%d.M%dP%d.mailctl", date.Unix(), f.w.seq, f.w.pid))
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, body)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chtimes(tmp, date, date); err != nil {
		return err
	}
	final := filepath.Join(f.dir, "cur", fmt.Sprintf("%s,S=%d:2,%s", filepath.Base(tmp), n, letters))
	return os.Rename(tmp, final)
}

func (f *MaildirFolder) writeKeywords() error {
	var b strings.Builder
	for i, n := range f.names {
		fmt.Fprintf(&b, "%d %s\n", i, n)
	}
	return os.WriteFile(filepath.Join(f.dir, "dovecot-keywords"), []byte(b.String()), 0o600)
}

// Close writes the subscriptions file (Dovecot's version 2 format).
func (w *MaildirWriter) Close() error {
	var b strings.Builder
	b.WriteString("V\t2\n\n")
	for _, s := range w.subs {
		parts := strings.Split(s, Delimiter)
		for i, p := range parts {
			parts[i] = encodeMUTF7(p)
		}
		b.WriteString(strings.Join(parts, "\t") + "\n")
	}
	return os.WriteFile(filepath.Join(w.root, "subscriptions"), []byte(b.String()), 0o600)
}
