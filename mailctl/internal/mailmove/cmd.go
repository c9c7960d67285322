package mailmove

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"google.golang.org/grpc"
)

// Usage lines of the commands, for mailctl's usage text.
const Usage = `  import ADDRESS --maildir DIR [--state FILE]                       (Dovecot Maildir++ tree; resumable with --state)
  import ADDRESS --mbox FILE [--folder NAME]                        (mboxrd/mboxo; default INBOX)
  import ADDRESS --imap HOST:PORT --imap-user U [--state FILE]      (password on stdin; TLS, or --starttls;
         [--insecure-skip-verify] [--limit N]                        resumable with --state)
  export ADDRESS --maildir DIR | --mbox DIR                         (never overwrites: a Maildir or mbox file there is refused)
`

// UsageError is a mistake in the command line.
type UsageError string

func (u UsageError) Error() string { return string(u) }

// Run runs "import" or "export" (args[0]) against the storage API on conn.
// Progress and warnings go to stderr; the summary to stdout.
// password reads the IMAP password (from stdin, as mailctl reads every
// password).
func Run(ctx context.Context, conn grpc.ClientConnInterface, args []string, password func() (string, error), stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	maildir := fs.String("maildir", "", "Maildir tree")
	mbox := fs.String("mbox", "", "mbox file (import) or directory (export)")
	folder := fs.String("folder", "INBOX", "folder an mbox is imported into")
	imapAddr := fs.String("imap", "", "IMAP server HOST:PORT")
	imapUser := fs.String("imap-user", "", "IMAP user name")
	starttls := fs.Bool("starttls", false, "IMAP: plain connection upgraded with STARTTLS instead of TLS")
	insecureSkip := fs.Bool("insecure-skip-verify", false, "IMAP: INSECURE, accept any server certificate (self-signed test servers)")
	state := fs.String("state", "", "IMAP and Maildir: state file that makes the import resumable")
	limit := fs.Int("limit", 0, "IMAP: stop after this many messages (0 = all); run again to go on")
	rest := args[1:]
	var address string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		address, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return UsageError(cmd + ": " + err.Error())
	}
	if address == "" && fs.NArg() > 0 {
		address = fs.Arg(0)
	}
	if address == "" {
		return UsageError(cmd + ": missing ADDRESS")
	}
	sources := 0
	for _, s := range []string{*maildir, *mbox, *imapAddr} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 || (cmd == "export" && *imapAddr != "") {
		if cmd == "export" {
			return UsageError("export: give one of --maildir DIR or --mbox DIR")
		}
		return UsageError("import: give one of --maildir DIR, --mbox FILE or --imap HOST:PORT")
	}
	s, err := OpenStore(ctx, conn, address)
	if err != nil {
		return err
	}
	s.Warn = func(w string) { fmt.Fprintln(stderr, "warning:", w) }
	progress := func(folder string, done, total int) {
		if total >= 0 {
			fmt.Fprintf(stderr, "%s: %d/%d\n", folder, done, total)
		} else {
			fmt.Fprintf(stderr, "%s: %d\n", folder, done)
		}
	}
	var n int
	switch {
	case cmd == "export" && *maildir != "":
		n, err = s.ExportMaildir(ctx, *maildir, progress)
	case cmd == "export":
		n, err = s.ExportMbox(ctx, *mbox, progress)
	case *maildir != "":
		var folders []Folder
		if folders, err = ReadMaildir(*maildir); err == nil {
			abs, _ := filepath.Abs(*maildir)
			n, err = s.ImportFolders(ctx, folders, "maildir:"+abs, *state, progress)
		}
	case *mbox != "":
		var f *os.File
		if f, err = os.Open(*mbox); err == nil {
			n, err = s.ImportMbox(ctx, f, *folder, progress)
			f.Close()
		}
	default:
		if *imapUser == "" {
			return UsageError("import --imap: missing --imap-user")
		}
		var pw string
		if pw, err = password(); err != nil {
			return err
		}
		if *insecureSkip {
			fmt.Fprintln(stderr, "warning: --insecure-skip-verify: the IMAP server's certificate is NOT checked")
		}
		src := IMAPSource{Addr: *imapAddr, User: *imapUser, Password: pw, StartTLS: *starttls, InsecureSkipVerify: *insecureSkip,
			StatePath: *state, Limit: *limit}
		n, err = src.Import(ctx, s, progress)
	}
	verb := map[string]string{"import": "imported", "export": "exported"}[cmd]
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			fmt.Fprintf(stdout, "interrupted after %d messages %s\n", n, verb)
		}
		return err
	}
	fmt.Fprintf(stdout, "%d messages %s\n", n, verb)
	return nil
}
