package imapconn

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// QUOTA (RFC 9208): one quota root per account, named "", with the
// resources STORAGE (in units of 1024 octets) and MESSAGE. Limits are set by
// the administrator (mailctl), so SETQUOTA is refused.

// QuotaResource is one resource of the quota root: its usage and limit.
type QuotaResource struct {
	Name         string // "STORAGE" or "MESSAGE"
	Usage, Limit int64
}

// quotaCaps are announced after login.
var quotaCaps = []imap.Cap{imap.CapQuota, "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"}

// writeQuota writes * QUOTA "" (resource usage limit ...) (RFC 9208 5.1).
func (c *Conn) writeQuota(resources []QuotaResource) {
	e := c.enc
	e.Atom("*").SP().Atom("QUOTA").SP().Quoted("").SP()
	e.List(len(resources), func(i int) {
		r := resources[i]
		e.Atom(r.Name).SP().Number64(uint64(r.Usage)).SP().Number64(uint64(r.Limit))
	})
	e.CRLF()
}

// getQuotaRoot answers GETQUOTAROOT mailbox: the mailbox's quota roots
// (the account's, when it has a limit) and each root's QUOTA.
func (c *Conn) getQuotaRoot(tag string) error {
	mbox, err := c.dec.ParseMailbox()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if _, err := c.session.Status(mbox, &imap.StatusOptions{NumMessages: true}); err != nil {
		return err // no such mailbox
	}
	resources, err := c.session.Quota()
	if err != nil {
		return err
	}
	e := c.enc
	e.Atom("*").SP().Atom("QUOTAROOT").SP().Mailbox(mbox)
	if len(resources) > 0 {
		e.SP().Quoted("")
	}
	e.CRLF()
	if len(resources) > 0 {
		c.writeQuota(resources)
	}
	return c.ok(tag, "GETQUOTAROOT")
}

// getQuota answers GETQUOTA root.
func (c *Conn) getQuota(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	root, err := c.dec.AString()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	resources, err := c.session.Quota()
	if err != nil {
		return err
	}
	if root != "" || len(resources) == 0 {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such quota root"}
	}
	c.writeQuota(resources)
	return c.ok(tag, "GETQUOTA")
}

// setQuota refuses SETQUOTA root (resources) after parsing it.
func (c *Conn) setQuota() error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	if _, err := c.dec.AString(); err != nil {
		return err
	}
	if err := c.dec.SP(); err != nil {
		return err
	}
	err := c.dec.ParenList(true, func() error {
		name, err := c.dec.Atom()
		if err != nil {
			return err
		}
		if n := strings.ToUpper(name); n != "STORAGE" && n != "MESSAGE" {
			return syntaxErr("unknown quota resource %s", name)
		}
		if err := c.dec.SP(); err != nil {
			return err
		}
		_, err = c.dec.Number64()
		return err
	})
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: "Quotas are set by the administrator"}
}
