// Package cli implements mailctl's commands.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/mailctl/internal/mailmove"
	"github.com/mailfleet/mailfleet/pkg/flagenv"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

const usage = `mailctl administers Mailfleet through the storage API.

Usage: mailctl [--storage ADDR] [-o text|json] COMMAND ...

  domain create DOMAIN | list | delete DOMAIN
  account create ADDRESS [--quota-bytes N] [--quota-messages N]   (password on stdin)
  account list [DOMAIN] | delete ADDRESS | passwd ADDRESS           (password on stdin)
  account quota ADDRESS BYTES [MESSAGES]                            (0 = unlimited)
  account disable ADDRESS | enable ADDRESS
  alias add ALIAS ADDRESS | remove ALIAS                            (ALIAS "@domain" = catch-all)
  dkim generate DOMAIN [--selector S] [--algorithm rsa|ed25519] [--rotate]   (prints the DNS TXT record)
  dkim show DOMAIN | remove DOMAIN SELECTOR                      (remove: a retired key only)
  queue list | show ID | retry ID | delete ID
  bootstrap --domain D [--domain D2] [--admin ADDRESS]             (password from $MAILFLEET_ADMIN_PASSWORD)
  selftest --smtp HOST:PORT --imaps HOST:PORT --domain D            (send through the MX, read over IMAPS)
  fsck [--repair]          check the whole cell: bodies, reference counts, orphans, counters (exit 1 if not clean)
  backup DIR               a consistent copy of the cell (etcd keys at one revision, then their bodies) while mail flows
  restore [--allow-missing] DIR   load a backup into an empty cell (then run fsck)
` + mailmove.Usage + `
The storage address comes from --storage or $MAILFLEET_STORAGE (default 127.0.0.1:7070).
-o json prints listings (domain list, account list, dkim show, queue list, queue show) and fsck's findings as JSON.
`

// clients bundles the storage API clients and how to print.
type clients struct {
	accounts storagev1.AccountServiceClient
	queue    storagev1.QueueServiceClient
	json     bool // -o json
	conn     *grpc.ClientConn
	stderr   io.Writer
}

// Main runs mailctl and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mailctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}    // -h and --help print the usage below, to stdout
	def := "127.0.0.1:7070" // $MAILFLEET_STORAGE overrides, as for every flag
	addr := fs.String("storage", def, "storage gRPC address")
	output := fs.String("o", "text", "output format of listings: text or json")
	var storageTLS storeclient.TLSFlags
	storageTLS.Register(fs)
	switch err := flagenv.Parse(fs, "MAILFLEET", args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "\n%s", usage)
		return 2
	}
	if fs.NArg() == 1 && fs.Arg(0) == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if fs.NArg() < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "mailctl: -o %s: want text or json\n", *output)
		return 2
	}
	creds := insecure.NewCredentials()
	tlsCfg, err := storageTLS.Config(slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "mailctl: storage TLS:", err)
		return 1
	}
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(storeclient.MaxRecvMsgSize), grpc.MaxCallSendMsgSize(storeclient.MaxSendMsgSize)))
	if err != nil {
		fmt.Fprintln(stderr, "mailctl:", err)
		return 1
	}
	defer conn.Close()
	c := &clients{accounts: storagev1.NewAccountServiceClient(conn), queue: storagev1.NewQueueServiceClient(conn), json: *output == "json", conn: conn, stderr: stderr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.run(ctx, fs.Args(), stdin, stdout)
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "mailctl: %s\n\n%s", u, usage)
		return 2
	default:
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "mailctl: %s\n", st.Message())
		} else {
			fmt.Fprintln(stderr, "mailctl:", err)
		}
		return 1
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

func want(args []string, n int, what string) error {
	if len(args) < n {
		return usageError("missing " + what)
	}
	return nil
}

func (c *clients) run(ctx context.Context, args []string, stdin io.Reader, out io.Writer) error {
	switch args[0] {
	case "bootstrap":
		return c.bootstrap(ctx, args[1:], out)
	case "selftest":
		return c.selftest(ctx, args[1:], out)
	case "fsck": // no deadline: as long as the cell takes
		return c.fsck(context.WithoutCancel(ctx), args[1:], out)
	case "backup":
		return c.backup(context.WithoutCancel(ctx), args[1:], out)
	case "restore":
		return c.restore(context.WithoutCancel(ctx), args[1:], out)
	case "import", "export": // no deadline: as long as the mailbox takes
		password := func() (string, error) { return readPassword(stdin) }
		err := mailmove.Run(context.WithoutCancel(ctx), c.conn, args, password, out, c.stderr)
		if errors.As(err, new(mailmove.UsageError)) {
			return usageError(err.Error())
		}
		return err
	}
	if len(args) < 2 {
		return usageError("missing command")
	}
	group, cmd, rest := args[0], args[1], args[2:]
	switch group + " " + cmd {
	case "domain create":
		if err := want(rest, 1, "DOMAIN"); err != nil {
			return err
		}
		resp, err := c.accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: rest[0]})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "domain %s created\n", resp.Domain.Name)
	case "domain list":
		resp, err := c.accounts.ListDomains(ctx, &storagev1.ListDomainsRequest{})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(out, resp.Domains)
		}
		for _, d := range resp.Domains {
			fmt.Fprintln(out, d.Name)
		}
	case "domain delete":
		if err := want(rest, 1, "DOMAIN"); err != nil {
			return err
		}
		if _, err := c.accounts.DeleteDomain(ctx, &storagev1.DeleteDomainRequest{Name: rest[0]}); err != nil {
			return err
		}
		fmt.Fprintf(out, "domain %s deleted\n", rest[0])
	case "account create":
		fs := flag.NewFlagSet("account create", flag.ContinueOnError)
		qb := fs.Uint64("quota-bytes", 0, "byte quota (0 = unlimited)")
		qm := fs.Uint64("quota-messages", 0, "message quota (0 = unlimited)")
		if err := fs.Parse(reorder(fs, rest)); err != nil {
			return usageError(err.Error())
		}
		if err := want(fs.Args(), 1, "ADDRESS"); err != nil {
			return err
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		resp, err := c.accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: fs.Arg(0), Password: pw, QuotaBytes: *qb, QuotaMessages: *qm})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "account %s created (id %s)\n", resp.Account.Address, resp.Account.Id)
	case "account list":
		req := &storagev1.ListAccountsRequest{}
		if len(rest) > 0 {
			req.Domain = rest[0]
		}
		resp, err := c.accounts.ListAccounts(ctx, req)
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(out, resp.Accounts)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tID\tBYTES\tBYTE QUOTA\tMESSAGES\tMESSAGE QUOTA\tDISABLED\tALIASES")
		for _, a := range resp.Accounts {
			q := a.Quota
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%v\t%s\n", a.Address, a.Id, q.GetUsedBytes(), limit(q.GetLimitBytes()),
				q.GetUsedMessages(), limit(q.GetLimitMessages()), a.Disabled, strings.Join(a.Aliases, ","))
		}
		tw.Flush()
	case "account delete", "account passwd", "account quota", "account disable", "account enable":
		if err := want(rest, 1, "ADDRESS"); err != nil {
			return err
		}
		acc, err := c.accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: rest[0]})
		if err != nil {
			return err
		}
		id := acc.Account.Id
		switch cmd {
		case "delete":
			_, err = c.accounts.DeleteAccount(ctx, &storagev1.DeleteAccountRequest{AccountId: id})
		case "passwd":
			var pw string
			if pw, err = readPassword(stdin); err == nil {
				_, err = c.accounts.SetPassword(ctx, &storagev1.SetPasswordRequest{AccountId: id, Password: pw})
			}
		case "quota":
			if err := want(rest, 2, "BYTES"); err != nil {
				return err
			}
			req := &storagev1.SetQuotaRequest{AccountId: id}
			if req.LimitBytes, err = parseSize(rest[1]); err != nil {
				return usageError(err.Error())
			}
			if len(rest) > 2 {
				if req.LimitMessages, err = strconv.ParseUint(rest[2], 10, 64); err != nil {
					return usageError("MESSAGES must be a number")
				}
			}
			_, err = c.accounts.SetQuota(ctx, req)
		case "disable", "enable":
			_, err = c.accounts.SetDisabled(ctx, &storagev1.SetDisabledRequest{AccountId: id, Disabled: cmd == "disable"})
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "account %s: %s done\n", acc.Account.Address, cmd)
	case "alias add":
		if err := want(rest, 2, "ALIAS ADDRESS"); err != nil {
			return err
		}
		acc, err := c.accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: rest[1]})
		if err != nil {
			return err
		}
		if _, err := c.accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: rest[0], AccountId: acc.Account.Id}); err != nil {
			return err
		}
		fmt.Fprintf(out, "alias %s -> %s added\n", rest[0], acc.Account.Address)
	case "alias remove":
		if err := want(rest, 1, "ALIAS"); err != nil {
			return err
		}
		if _, err := c.accounts.RemoveAlias(ctx, &storagev1.RemoveAliasRequest{Alias: rest[0]}); err != nil {
			return err
		}
		fmt.Fprintf(out, "alias %s removed\n", rest[0])
	case "dkim generate":
		fs := flag.NewFlagSet("dkim generate", flag.ContinueOnError)
		selector := fs.String("selector", "", `DKIM selector (default "mf", or "mf" and the date when rotating)`)
		algo := fs.String("algorithm", "rsa", "rsa or ed25519")
		rotate := fs.Bool("rotate", false, "replace the domain's signing key; the old one is kept (retired) until dkim remove")
		if err := fs.Parse(reorder(fs, rest)); err != nil {
			return usageError(err.Error())
		}
		if err := want(fs.Args(), 1, "DOMAIN"); err != nil {
			return err
		}
		if *selector == "" && *rotate {
			*selector = "mf" + time.Now().UTC().Format("20060102")
		}
		resp, err := c.accounts.GenerateDKIMKey(ctx, &storagev1.GenerateDKIMKeyRequest{Domain: fs.Arg(0), Selector: *selector, Algorithm: *algo, Rotate: *rotate})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "DKIM key for %s created; it signs from now on. Publish this DNS record:\n%s. IN TXT %s\n", resp.Key.Domain, resp.Key.DnsName, quoteTXT(resp.Key.DnsValue))
		if r := resp.Retired; r != nil {
			fmt.Fprintf(out, "The key of selector %s is retired: keep %s published until mail it signed has been delivered (a few days), then run\n  mailctl dkim remove %s %s\n",
				r.Selector, r.DnsName, r.Domain, r.Selector)
		}
	case "dkim show":
		if err := want(rest, 1, "DOMAIN"); err != nil {
			return err
		}
		resp, err := c.accounts.ListDKIMKeys(ctx, &storagev1.ListDKIMKeysRequest{Domain: rest[0]})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(out, resp.Keys)
		}
		for _, k := range resp.Keys {
			state := "signing"
			if k.Retired {
				state = "retired"
			}
			fmt.Fprintf(out, "; selector %s (%s, %s)\n%s. IN TXT %s\n", k.Selector, state, k.Algorithm, k.DnsName, quoteTXT(k.DnsValue))
		}
	case "dkim remove":
		if err := want(rest, 2, "DOMAIN SELECTOR"); err != nil {
			return err
		}
		if _, err := c.accounts.RemoveDKIMKey(ctx, &storagev1.RemoveDKIMKeyRequest{Domain: rest[0], Selector: rest[1]}); err != nil {
			return err
		}
		fmt.Fprintf(out, "retired DKIM key %s of %s removed; its DNS record can go\n", rest[1], rest[0])
	case "queue list":
		var items []*storagev1.QueueItem
		if err := storagev1.ListAllQueue(ctx, c.queue, func(page []*storagev1.QueueItem) error {
			items = append(items, page...)
			return nil
		}); err != nil {
			return err
		}
		if c.json {
			return printJSON(out, items)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDELIVERY\tFROM\tRECIPIENTS\tSIZE\tATTEMPTS\tNEXT ATTEMPT\tLEASED")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%v\n", it.Id, deliveryKind(it), orNull(it.MailFrom), len(it.Recipients), it.Size, it.Attempts,
				it.NextAttemptAt.AsTime().Format(time.RFC3339), it.Leased)
		}
		tw.Flush()
	case "queue show":
		if err := want(rest, 1, "ID"); err != nil {
			return err
		}
		resp, err := c.queue.GetQueueItem(ctx, &storagev1.GetQueueItemRequest{Id: rest[0]})
		if err != nil {
			return err
		}
		it := resp.Item
		if c.json {
			return printJSON(out, []*storagev1.QueueItem{it})
		}
		fmt.Fprintf(out, "id: %s\nfrom: %s\nsize: %d\ncreated: %s\nnext attempt: %s\nexpires: %s\nattempts: %d\nlast error: %s\nleased: %v\n",
			it.Id, orNull(it.MailFrom), it.Size, it.CreatedAt.AsTime().Format(time.RFC3339), it.NextAttemptAt.AsTime().Format(time.RFC3339),
			it.ExpiresAt.AsTime().Format(time.RFC3339), it.Attempts, it.LastError, it.Leased)
		fmt.Fprintf(out, "delivery: %s\n", deliveryKind(it))
		for _, r := range it.Recipients {
			fmt.Fprintf(out, "recipient: %s %s %s\n", r.Address, strings.TrimPrefix(r.State.String(), "STATE_"), r.LastResult)
		}
	case "queue retry":
		if err := want(rest, 1, "ID"); err != nil {
			return err
		}
		if _, err := c.queue.RetryQueueItem(ctx, &storagev1.RetryQueueItemRequest{Id: rest[0]}); err != nil {
			return err
		}
		fmt.Fprintf(out, "queue item %s is due now\n", rest[0])
	case "queue delete":
		if err := want(rest, 1, "ID"); err != nil {
			return err
		}
		if _, err := c.queue.DeleteQueueItem(ctx, &storagev1.DeleteQueueItemRequest{Id: rest[0]}); err != nil {
			return err
		}
		fmt.Fprintf(out, "queue item %s deleted\n", rest[0])
	default:
		return usageError("unknown command " + group + " " + cmd)
	}
	return nil
}

// reorder puts flags before positional arguments so that both
// "account create --quota-bytes 1 a@b" and "account create a@b --quota-bytes 1" work.
// A flag of fs takes the next argument as its value unless it is boolean.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			flags = append(flags, args[i])
			isBool := false
			if f := fs.Lookup(strings.TrimLeft(args[i], "-")); f != nil {
				b, ok := f.Value.(interface{ IsBoolFlag() bool })
				isBool = ok && b.IsBoolFlag()
			}
			if !isBool && !strings.Contains(args[i], "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, args[i])
	}
	return append(flags, pos...)
}

// readPassword reads one line from stdin, so that passwords never appear in
// process lists or shell history.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", usageError("the password is read from stdin (e.g. `echo -n secret | mailctl ...`) and was empty")
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usageError("empty password on stdin")
	}
	return pw, nil
}

// parseSize accepts plain bytes or a K/M/G/T suffix (powers of 1024).
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	upper := strings.ToUpper(strings.TrimSuffix(strings.ToUpper(s), "B"))
	for i, suf := range []string{"K", "M", "G", "T"} {
		if strings.HasSuffix(upper, suf) {
			mult = 1 << (10 * (i + 1))
			upper = strings.TrimSuffix(upper, suf)
		}
	}
	n, err := strconv.ParseUint(upper, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

// quoteTXT splits a TXT value into 255-byte quoted strings, as zone files want.
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

func limit(n uint64) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.FormatUint(n, 10)
}

func orNull(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// deliveryKind says how the queue runners deliver an item: over SMTP to
// the recipients' servers, or into local mailboxes that could not take it
// when it arrived.
func deliveryKind(it *storagev1.QueueItem) string {
	if it.Local {
		return "local"
	}
	return "remote"
}

// printJSON writes items as a JSON array, one object per item with the
// storage API's field names (protobuf's JSON mapping), for scripts.
func printJSON[M proto.Message](out io.Writer, items []M) error {
	opts := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	parts := make([]json.RawMessage, len(items))
	for i, m := range items {
		b, err := opts.Marshal(m)
		if err != nil {
			return err
		}
		parts[i] = b
	}
	b, err := json.MarshalIndent(parts, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
