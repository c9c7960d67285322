// Package authcheck verifies where a message comes from: SPF (RFC 7208) for
// the client IP and envelope sender, DKIM signatures (RFC 6376) and DMARC
// (RFC 7489) for the From: domain. It returns the Authentication-Results
// header (RFC 8601) to prepend and the DMARC verdict.
package authcheck

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/mail"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/mailfleet/mailfleet/pkg/dnsresolver"
)

// Checker runs the checks with one resolver.
type Checker struct {
	Resolver *dnsresolver.Resolver
	// AuthServID names this server in Authentication-Results.
	AuthServID string
}

// Result is what the checks found.
type Result struct {
	SPF        spf.Result
	SPFDomain  string
	DKIM       []*dkim.Verification
	FromDomain string
	DMARC      authres.ResultValue
	// Policy is the DMARC policy that applies when DMARC failed.
	Policy dmarc.Policy
	// Header is the Authentication-Results field, without a line ending.
	Header string
}

// TempError reports whether a DNS failure left the verdict open: SPF
// temperror, or DMARC that could not be evaluated (its record, or a DKIM
// key it needed, did not come). The MX answers 451 4.4.3 then: RFC 7208
// 8.6 ("If the message is rejected during the SMTP transaction for this
// reason, the software SHOULD use an SMTP reply code of 451 and, if
// supported, the 4.4.3 enhanced status code"); RFC 7489 6.6.3 leaves DNS
// errors on the policy record to the receiver.
func (r *Result) TempError() bool {
	return r.SPF == spf.TempError || r.DMARC == authres.ResultTempError
}

// Reject reports whether the sender's DMARC policy asks to refuse this message.
func (r *Result) Reject() bool {
	return r.DMARC == authres.ResultFail && r.Policy == dmarc.PolicyReject
}

// Check runs SPF, DKIM and DMARC. msg returns a fresh reader of the message.
func (c *Checker) Check(ctx context.Context, ip net.IP, helo, mailFrom string, msg func() io.Reader) *Result {
	res := &Result{}
	// SPF on MAIL FROM (or the HELO name for a null sender).
	res.SPFDomain = domainOf(mailFrom)
	if res.SPFDomain == "" {
		res.SPFDomain = helo
	}
	res.SPF, _ = spf.CheckHostWithSender(ip, helo, mailFrom, spf.WithResolver(c.Resolver), spf.WithContext(ctx))
	if res.SPF == spf.TempError {
		// The message gets a 451: no point in waiting on more lookups.
		return res
	}

	// DKIM signatures; the library's hook takes no context, the lookups
	// still end with the transaction's.
	lookupTXT := func(name string) ([]string, error) { return c.Resolver.LookupTXT(ctx, name) }
	verifications, err := dkim.VerifyWithOptions(msg(), &dkim.VerifyOptions{LookupTXT: lookupTXT, MaxVerifications: 5})
	if err == nil {
		res.DKIM = verifications
	}

	// DMARC on the From: domain.
	res.FromDomain = fromDomain(msg())
	res.DMARC, res.Policy = c.dmarc(lookupTXT, res)

	results := []authres.Result{&authres.SPFResult{Value: authres.ResultValue(res.SPF), From: mailFrom, Helo: helo}}
	if mailFrom == "" {
		results[0] = &authres.SPFResult{Value: authres.ResultValue(res.SPF), Helo: helo}
	}
	if len(res.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, v := range res.DKIM {
		var value authres.ResultValue = authres.ResultPass
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			value = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			value = authres.ResultPermError
		default:
			value = authres.ResultFail
		}
		results = append(results, &authres.DKIMResult{Value: value, Domain: v.Domain, Identifier: v.Identifier})
	}
	results = append(results, &authres.DMARCResult{Value: res.DMARC, From: res.FromDomain})
	res.Header = "Authentication-Results: " + authres.Format(c.AuthServID, results)
	return res
}

// dmarc evaluates the From: domain's policy against the aligned SPF and DKIM
// results (RFC 7489 4.2 and 6.6).
func (c *Checker) dmarc(lookupTXT func(string) ([]string, error), res *Result) (authres.ResultValue, dmarc.Policy) {
	if res.FromDomain == "" {
		return authres.ResultNone, ""
	}
	org, _ := publicsuffix.EffectiveTLDPlusOne(res.FromDomain)
	rec, err := dmarc.LookupWithOptions(res.FromDomain, &dmarc.LookupOptions{LookupTXT: lookupTXT})
	policy := dmarc.Policy("")
	if err == dmarc.ErrNoPolicy && org != "" && org != res.FromDomain {
		// The organizational domain's record, with its subdomain policy.
		rec, err = dmarc.LookupWithOptions(org, &dmarc.LookupOptions{LookupTXT: lookupTXT})
		if err == nil && rec.SubdomainPolicy != "" {
			policy = rec.SubdomainPolicy
		}
	}
	switch {
	case err == dmarc.ErrNoPolicy:
		return authres.ResultNone, ""
	case dmarc.IsTempFail(err):
		return authres.ResultTempError, ""
	case err != nil:
		return authres.ResultPermError, ""
	}
	if policy == "" {
		policy = rec.Policy
	}
	if res.SPF == spf.Pass && aligned(res.SPFDomain, res.FromDomain, rec.SPFAlignment) {
		return authres.ResultPass, policy
	}
	tempFailed := false
	for _, v := range res.DKIM {
		if v.Err == nil && aligned(v.Domain, res.FromDomain, rec.DKIMAlignment) {
			return authres.ResultPass, policy
		}
		tempFailed = tempFailed || dkim.IsTempFail(v.Err) && aligned(v.Domain, res.FromDomain, rec.DKIMAlignment)
	}
	if tempFailed {
		// An aligned signature whose key did not come might have passed:
		// not a failure to act on (RFC 6376 6.1.2: TEMPFAIL).
		return authres.ResultTempError, policy
	}
	return authres.ResultFail, policy
}

// aligned compares two domains strictly or by organizational domain.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == b {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	oa, errA := publicsuffix.EffectiveTLDPlusOne(a)
	ob, errB := publicsuffix.EffectiveTLDPlusOne(b)
	return errA == nil && errB == nil && oa == ob
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// fromDomain returns the domain of the single From: address, or "".
func fromDomain(r io.Reader) string {
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		return ""
	}
	list, err := mail.ParseAddressList(h.Get("From"))
	if err != nil || len(list) != 1 {
		return ""
	}
	return domainOf(list[0].Address)
}
