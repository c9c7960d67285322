package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"strings"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// bootstrap creates domains and an admin account if they are missing (the
// Helm chart's post-install Job). The password comes from
// $MAILFLEET_ADMIN_PASSWORD.
func (c *clients) bootstrap(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	var domains multi
	fs.Var(&domains, "domain", "domain to create (repeatable)")
	admin := fs.String("admin", "", "admin account address")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	for _, d := range domains {
		_, err := c.accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: d})
		switch {
		case err == nil:
			fmt.Fprintf(out, "domain %s created\n", d)
		case storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_ADDRESS_EXISTS:
			fmt.Fprintf(out, "domain %s exists\n", d)
		default:
			return err
		}
	}
	if *admin == "" {
		return nil
	}
	if _, err := c.accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: *admin}); err == nil {
		fmt.Fprintf(out, "account %s exists\n", *admin)
		return nil
	}
	pw := os.Getenv("MAILFLEET_ADMIN_PASSWORD")
	if pw == "" {
		return usageError("MAILFLEET_ADMIN_PASSWORD is empty")
	}
	if _, err := c.accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: *admin, Password: pw}); err != nil {
		return err
	}
	fmt.Fprintf(out, "account %s created\n", *admin)
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// selftest proves the mail flow of a deployment (helm test): it creates a
// throw-away account, sends it a message through the MX, reads it back over
// IMAPS, and deletes the account.
func (c *clients) selftest(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("selftest", flag.ContinueOnError)
	smtpAddr := fs.String("smtp", "", "the MX, host:port")
	imapsAddr := fs.String("imaps", "", "IMAPS, host:port")
	domain := fs.String("domain", "", "a local domain")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *smtpAddr == "" || *imapsAddr == "" || *domain == "" {
		return usageError("selftest needs --smtp, --imaps and --domain")
	}
	b := make([]byte, 6)
	rand.Read(b)
	tag := hex.EncodeToString(b)
	user, pw := "selftest-"+tag+"@"+*domain, "pw-"+tag+"-"+tag
	acc, err := c.accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: user, Password: pw})
	if err != nil {
		return fmt.Errorf("creating the test account: %w", err)
	}
	defer c.accounts.DeleteAccount(context.WithoutCancel(ctx), &storagev1.DeleteAccountRequest{AccountId: acc.Account.Id})
	msgID := "<selftest-" + tag + "@" + *domain + ">"
	msg := "From: selftest@example.org\r\nTo: " + user + "\r\nSubject: Mailfleet selftest\r\nMessage-ID: " + msgID + "\r\n\r\nselftest " + tag + "\r\n"
	if err := sendProbe(*smtpAddr, user, msg); err != nil {
		return fmt.Errorf("SMTP to %s: %w", *smtpAddr, err)
	}
	fmt.Fprintf(out, "sent a message to %s through %s\n", user, *smtpAddr)
	body, err := imapFetchFirst(*imapsAddr, user, pw)
	if err != nil {
		return fmt.Errorf("IMAP at %s: %w", *imapsAddr, err)
	}
	if !strings.Contains(body, "selftest "+tag) || !strings.Contains(body, msgID) {
		return fmt.Errorf("IMAP returned another message:\n%s", body)
	}
	fmt.Fprintf(out, "read it back over IMAPS from %s: OK\n", *imapsAddr)
	return nil
}

// sendProbe delivers msg as a remote MTA would: STARTTLS when offered
// (opportunistic, any certificate), then one transaction.
func sendProbe(addr, rcpt, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("selftest.mailctl"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			return err
		}
	}
	if err := c.Mail("selftest@example.org"); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// imapFetchFirst logs in over TLS and fetches INBOX message 1, speaking IMAP
// line by line (enough for a probe; clients use real libraries).
func imapFetchFirst(addr, user, pw string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		return "", err
	}
	do := func(tag, cmd string) (string, error) {
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		var all strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return all.String(), err
			}
			all.WriteString(l)
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					return all.String(), fmt.Errorf("%s: %s", strings.Fields(cmd)[0], strings.TrimSpace(l))
				}
				return all.String(), nil
			}
		}
	}
	if _, err := do("a", fmt.Sprintf("LOGIN %q %q", user, pw)); err != nil {
		return "", err
	}
	for i := 0; i < 20; i++ {
		sel, err := do("b", "SELECT INBOX")
		if err != nil {
			return "", err
		}
		if !strings.Contains(sel, "* 0 EXISTS") {
			return do("c", "FETCH 1 BODY.PEEK[]")
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "", fmt.Errorf("the message did not arrive")
}
