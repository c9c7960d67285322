package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

var enhancedRE = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)

// statusOf extracts the RFC 3463 status for a failed recipient from the
// last SMTP reply: a permanent one as it is, a transient one that outlived
// the queue lifetime as its permanent counterpart (4.2.2 mailbox full →
// 5.2.2), anything else the generic 5.0.0.
func statusOf(result string) string {
	m := enhancedRE.FindString(result)
	switch {
	case strings.HasPrefix(m, "5"):
		return m
	case strings.HasPrefix(m, "4"):
		return "5" + m[1:]
	}
	return "5.0.0"
}

// delayStatusOf is the RFC 3463 status of a recipient still being retried:
// the transient code of the last reply, or 4.0.0.
func delayStatusOf(result string) string {
	if m := enhancedRE.FindString(result); strings.HasPrefix(m, "4") {
		return m
	}
	return "4.0.0"
}

// sendDSN delivers a delivery status notification (RFC 3464, in a
// multipart/report, RFC 6522) to the sender: for failed recipients, or, when
// delayed, for recipients still being retried (Action: delayed, RFC 3464
// 2.3.3). It goes into the INBOX of a local sender, through the queue to a
// remote one. A null sender gets none (a DSN never bounces).
func (r *Runner) sendDSN(ctx context.Context, item *storagev1.QueueItem, rcpts []*storagev1.QueueRecipient, delayed bool) error {
	if item.MailFrom == "" {
		return nil
	}
	headers, err := r.originalHeaders(ctx, item.Id)
	if err != nil {
		return err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	b := make([]byte, 6)
	rand.Read(b)
	now := time.Now()
	subject, intro := "Undelivered Mail Returned to Sender", "Your message could not be delivered to these recipients:"
	if delayed {
		subject = "Delayed Mail (still being retried)"
		intro = fmt.Sprintf("Your message has not been delivered yet to these recipients after %s.\r\n"+
			"This is only a warning: the mail system keeps trying until %s, and you need not send it again.",
			now.Sub(item.CreatedAt.AsTime()).Round(time.Minute), item.ExpiresAt.AsTime().Format(time.RFC1123Z))
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r.cfg.Hostname)
	fmt.Fprintf(&msg, "To: <%s>\r\n", item.MailFrom)
	fmt.Fprintf(&msg, "Subject: %s\r\n", subject)
	fmt.Fprintf(&msg, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Message-ID: <%s.dsn@%s>\r\n", hex.EncodeToString(b), r.cfg.Hostname)
	fmt.Fprintf(&msg, "Auto-Submitted: auto-replied\r\n")
	fmt.Fprintf(&msg, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(&msg, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())

	// 1: for people.
	part, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}})
	fmt.Fprintf(part, "This is the mail system at %s.\r\n\r\n%s\r\n\r\n", r.cfg.Hostname, intro)
	for _, f := range rcpts {
		fmt.Fprintf(part, "<%s>: %s\r\n", f.Address, f.LastResult)
	}
	// 2: for programs (RFC 3464 2).
	part, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}})
	fmt.Fprintf(part, "Reporting-MTA: dns; %s\r\n", r.cfg.Hostname)
	fmt.Fprintf(part, "X-Mailfleet-Queue-ID: %s\r\n", item.Id)
	fmt.Fprintf(part, "Arrival-Date: %s\r\n", item.CreatedAt.AsTime().Format(time.RFC1123Z))
	for _, f := range rcpts {
		if delayed {
			fmt.Fprintf(part, "\r\nFinal-Recipient: rfc822; %s\r\nAction: delayed\r\nStatus: %s\r\n", f.Address, delayStatusOf(f.LastResult))
		} else {
			fmt.Fprintf(part, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n", f.Address, statusOf(f.LastResult))
		}
		if strings.HasPrefix(f.LastResult, "5") || strings.HasPrefix(f.LastResult, "4") {
			fmt.Fprintf(part, "Diagnostic-Code: smtp; %s\r\n", f.LastResult)
		}
		fmt.Fprintf(part, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if delayed && item.ExpiresAt != nil {
			// RFC 3464 2.3.8.
			fmt.Fprintf(part, "Will-Retry-Until: %s\r\n", item.ExpiresAt.AsTime().Format(time.RFC1123Z))
		}
	}
	// 3: the original headers (RFC 6522 text/rfc822-headers).
	part, _ = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/rfc822-headers"}})
	part.Write(headers)
	mw.Close()
	msg.Write(body.Bytes())

	resp, err := r.store.Deliver(ctx, &storagev1.DeliverRequest_Metadata{Recipients: []string{item.MailFrom}}, bytes.NewReader(msg.Bytes()))
	if err != nil {
		return err
	}
	switch st := resp.Results[0].Status; st {
	case storagev1.RecipientResult_STATUS_DELIVERED, storagev1.RecipientResult_STATUS_UNKNOWN_USER:
		return nil
	case storagev1.RecipientResult_STATUS_NOT_LOCAL:
		// A sender elsewhere (mail that came in through the MX): the DSN
		// leaves through the queue, from the null sender so that it can
		// never bounce back.
		_, err := r.store.Deliver(ctx, &storagev1.DeliverRequest_Metadata{
			Outbound: &storagev1.EnqueueRequest_Metadata{Recipients: []string{item.MailFrom}},
		}, bytes.NewReader(msg.Bytes()))
		return err
	default:
		return fmt.Errorf("DSN not stored: %v", st)
	}
}

// originalHeaders reads the queued message's header section (up to 64 KiB).
func (r *Runner) originalHeaders(ctx context.Context, id string) ([]byte, error) {
	stream, err := r.store.Queue.GetQueueBody(ctx, &storagev1.GetQueueBodyRequest{Id: id})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for buf.Len() < 64<<10 {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		buf.Write(resp.GetChunk().GetData())
		if i := bytes.Index(buf.Bytes(), []byte("\r\n\r\n")); i >= 0 {
			return buf.Bytes()[:i+2], nil
		}
	}
	return buf.Bytes(), nil
}
