package service

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/password"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// defaultMailboxes are created with every account (RFC 6154 special use).
var defaultMailboxes = []struct {
	name string
	use  storagev1.SpecialUse
}{
	{"INBOX", storagev1.SpecialUse_SPECIAL_USE_NONE},
	{"Drafts", storagev1.SpecialUse_SPECIAL_USE_DRAFTS},
	{"Sent", storagev1.SpecialUse_SPECIAL_USE_SENT},
	{"Trash", storagev1.SpecialUse_SPECIAL_USE_TRASH},
	{"Junk", storagev1.SpecialUse_SPECIAL_USE_JUNK},
	{"Archive", storagev1.SpecialUse_SPECIAL_USE_ARCHIVE},
}

// normalizeDomain lower-cases and checks a domain name.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" || len(d) > 253 || !utf8.ValidString(d) {
		return "", errInvalid("invalid domain %q", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return "", errInvalid("invalid domain %q", d)
		}
		for _, c := range label {
			if !(c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c > 0x7f && unicode.IsLetter(c)) {
				return "", errInvalid("invalid domain %q", d)
			}
		}
	}
	return d, nil
}

// normalizeAddress splits and lower-cases local@domain. Local parts are
// compared case-insensitively, as users of every mainstream server expect.
func normalizeAddress(a string) (local, domain string, err error) {
	a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "<"), ">")
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at > 64 || !utf8.ValidString(a) {
		return "", "", errInvalid("invalid address %q", a)
	}
	local = strings.ToLower(a[:at])
	for _, c := range local {
		if c <= ' ' || c == 0x7f || c == '/' || c == '@' || unicode.IsSpace(c) {
			return "", "", errInvalid("invalid address %q", a)
		}
	}
	domain, err = normalizeDomain(a[at+1:])
	if err != nil {
		return "", "", errInvalid("invalid address %q", a)
	}
	return local, domain, nil
}

func (s *Server) domainExists(ctx context.Context, domain string) (bool, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Domain(domain), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

func (s *Server) CreateDomain(ctx context.Context, req *storagev1.CreateDomainRequest) (*storagev1.CreateDomainResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	name, err := normalizeDomain(req.Name)
	if err != nil {
		return nil, err
	}
	d := &storagev1.Domain{Name: name, CreatedAt: timestamppb.Now()}
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		if _, exists, err := tx.Get(s.keys.Domain(name)); err != nil {
			return err
		} else if exists {
			return fail(reasonAddressExists, "domain %s exists", name)
		}
		tx.Put(s.keys.Domain(name), marshal(d))
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("domain created", "domain", name)
	return &storagev1.CreateDomainResponse{Domain: d}, nil
}

func (s *Server) DeleteDomain(ctx context.Context, req *storagev1.DeleteDomainRequest) (*storagev1.DeleteDomainResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	name, err := normalizeDomain(req.Name)
	if err != nil {
		return nil, err
	}
	// One transaction: the domain exists and no address key lies under it.
	// An account created concurrently either commits first (and this fails)
	// or finds the domain gone (its own transaction compares the domain key).
	domainKey, addrs := s.keys.Domain(name), s.keys.DomainAddresses(name)
	resp, err := s.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(domainKey), ">", 0),
			clientv3.Compare(clientv3.CreateRevision(addrs), "=", 0).WithPrefix()).
		Then(clientv3.OpDelete(domainKey), clientv3.OpDelete(s.keys.DKIM(name)),
			clientv3.OpDelete(s.keys.RetiredDKIM(name, ""), clientv3.WithPrefix())).
		Else(clientv3.OpGet(domainKey, clientv3.WithCountOnly()), clientv3.OpGet(addrs, clientv3.WithPrefix(), clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fail(reasonDomainNotFound, "no such domain %s", name)
		}
		return nil, fail(reasonDomainNotEmpty, "domain %s still has %d addresses", name, resp.Responses[1].GetResponseRange().Count)
	}
	s.log.Info("domain deleted", "domain", name)
	return &storagev1.DeleteDomainResponse{}, nil
}

func (s *Server) ListDomains(ctx context.Context, req *storagev1.ListDomainsRequest) (*storagev1.ListDomainsResponse, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Domains(), clientv3.WithPrefix())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &storagev1.ListDomainsResponse{}
	for _, kv := range resp.Kvs {
		d := &storagev1.Domain{}
		if err := proto.Unmarshal(kv.Value, d); err != nil {
			return nil, toStatus(err)
		}
		out.Domains = append(out.Domains, d)
	}
	return out, nil
}

func (s *Server) CreateAccount(ctx context.Context, req *storagev1.CreateAccountRequest) (*storagev1.CreateAccountResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	local, domain, err := normalizeAddress(req.Address)
	if err != nil {
		return nil, err
	}
	hash, err := s.hashNewPassword(req.Password)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rec := &records.AccountRecord{
		Id:           newID(),
		Address:      local + "@" + domain,
		PasswordHash: hash,
		CreatedAt:    timestamppb.New(now),
	}
	quota := &storagev1.Quota{LimitBytes: req.QuotaBytes, LimitMessages: req.QuotaMessages}
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		if _, ok, err := tx.Get(s.keys.Domain(domain)); err != nil {
			return err
		} else if !ok {
			return fail(reasonDomainNotFound, "domain %s is not local", domain)
		}
		if _, taken, err := tx.Get(s.keys.Address(domain, local)); err != nil {
			return err
		} else if taken {
			return fail(reasonAddressExists, "address %s is in use", rec.Address)
		}
		// UIDVALIDITY starts from the clock so that a re-created account
		// never repeats a value a client may have cached.
		rec.NextUidValidity = uint32(now.Unix())
		for _, d := range defaultMailboxes {
			mb := &storagev1.Mailbox{
				Id: newID(), Name: d.name, SpecialUse: d.use, Subscribed: true,
				UidValidity: rec.NextUidValidity, UidNext: 1, HighestModseq: firstModseq, ExpungeLog: &storagev1.ExpungeLog{},
			}
			rec.NextUidValidity++
			s.saveMailbox(tx, rec.Id, mb)
			tx.Put(s.keys.Name(rec.Id, mb.Name), []byte(mb.Id))
		}
		tx.Put(s.keys.Account(rec.Id), marshal(rec))
		s.saveQuota(tx, rec.Id, quota)
		tx.Put(s.keys.Address(domain, local), marshal(&records.AddressRecord{AccountId: rec.Id, Kind: records.AddressRecord_KIND_PRIMARY}))
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("account created", "account", rec.Id, "address", rec.Address)
	return &storagev1.CreateAccountResponse{Account: accountView(rec, quota)}, nil
}

func accountView(rec *records.AccountRecord, q *storagev1.Quota) *storagev1.Account {
	return &storagev1.Account{
		Id: rec.Id, Address: rec.Address, Aliases: rec.Aliases,
		Disabled: rec.Disabled, Quota: q, CreatedAt: rec.CreatedAt,
	}
}

// lookupAddress returns the directory entry of an address, or nil.
func (s *Server) lookupAddress(ctx context.Context, local, domain string) (*records.AddressRecord, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Address(domain, local))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	rec := &records.AddressRecord{}
	return rec, proto.Unmarshal(resp.Kvs[0].Value, rec)
}

// getAccount reads an account and its quota (nil, nil if it does not exist).
func (s *Server) getAccount(ctx context.Context, id string) (*records.AccountRecord, *storagev1.Quota, error) {
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(s.keys.Account(id)), clientv3.OpGet(s.keys.Quota(id))).Commit()
	if err != nil {
		return nil, nil, err
	}
	accKvs, quotaKvs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(accKvs) == 0 {
		return nil, nil, nil
	}
	rec, q := &records.AccountRecord{}, &storagev1.Quota{}
	if err := proto.Unmarshal(accKvs[0].Value, rec); err != nil {
		return nil, nil, err
	}
	if len(quotaKvs) > 0 {
		if err := proto.Unmarshal(quotaKvs[0].Value, q); err != nil {
			return nil, nil, err
		}
	}
	if rec.Deleting {
		return nil, nil, nil
	}
	return rec, q, nil
}

func (s *Server) GetAccount(ctx context.Context, req *storagev1.GetAccountRequest) (*storagev1.GetAccountResponse, error) {
	id := req.AccountId
	if id == "" {
		local, domain, err := normalizeAddress(req.Address)
		if err != nil {
			return nil, err
		}
		addr, err := s.lookupAddress(ctx, local, domain)
		if err != nil {
			return nil, toStatus(err)
		}
		if addr == nil {
			return nil, fail(reasonAccountNotFound, "no account has address %s@%s", local, domain)
		}
		id = addr.AccountId
	}
	rec, q, err := s.getAccount(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	if rec == nil {
		return nil, fail(reasonAccountNotFound, "no such account")
	}
	return &storagev1.GetAccountResponse{Account: accountView(rec, q)}, nil
}

func (s *Server) ListAccounts(ctx context.Context, req *storagev1.ListAccountsRequest) (*storagev1.ListAccountsResponse, error) {
	prefix := s.keys.Addresses()
	if req.Domain != "" {
		d, err := normalizeDomain(req.Domain)
		if err != nil {
			return nil, err
		}
		prefix = s.keys.DomainAddresses(d)
	}
	resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &storagev1.ListAccountsResponse{}
	for _, kv := range resp.Kvs {
		addr := &records.AddressRecord{}
		if err := proto.Unmarshal(kv.Value, addr); err != nil {
			return nil, toStatus(err)
		}
		if addr.Kind != records.AddressRecord_KIND_PRIMARY {
			continue
		}
		rec, q, err := s.getAccount(ctx, addr.AccountId)
		if err != nil {
			return nil, toStatus(err)
		}
		if rec != nil {
			out.Accounts = append(out.Accounts, accountView(rec, q))
		}
	}
	return out, nil
}

// updateAccount applies fn to an account record in a transaction.
func (s *Server) updateAccount(ctx context.Context, id string, fn func(rec *records.AccountRecord) error) error {
	defer s.recipients.clear() // this replica answers from the new state at once
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		rec, err := s.loadAccount(tx, id)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		tx.Put(s.keys.Account(id), marshal(rec))
		return nil
	})
	return toStatus(err)
}

func (s *Server) SetPassword(ctx context.Context, req *storagev1.SetPasswordRequest) (*storagev1.SetPasswordResponse, error) {
	hash, err := s.hashNewPassword(req.Password)
	if err != nil {
		return nil, err
	}
	if err := s.updateAccount(ctx, req.AccountId, func(rec *records.AccountRecord) error {
		rec.PasswordHash = hash
		return nil
	}); err != nil {
		return nil, err
	}
	s.log.Info("password changed", "account", req.AccountId)
	return &storagev1.SetPasswordResponse{}, nil
}

func (s *Server) SetDisabled(ctx context.Context, req *storagev1.SetDisabledRequest) (*storagev1.SetDisabledResponse, error) {
	if err := s.updateAccount(ctx, req.AccountId, func(rec *records.AccountRecord) error {
		rec.Disabled = req.Disabled
		return nil
	}); err != nil {
		return nil, err
	}
	s.log.Info("account disabled state changed", "account", req.AccountId, "disabled", req.Disabled)
	return &storagev1.SetDisabledResponse{}, nil
}

func (s *Server) SetQuota(ctx context.Context, req *storagev1.SetQuotaRequest) (*storagev1.SetQuotaResponse, error) {
	defer s.recipients.clear() // this replica answers from the new state at once
	var q *storagev1.Quota
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		var err error
		if q, err = s.loadQuota(tx, req.AccountId); err != nil {
			return err
		}
		q.LimitBytes, q.LimitMessages = req.LimitBytes, req.LimitMessages
		s.saveQuota(tx, req.AccountId, q)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("quota changed", "account", req.AccountId, "bytes", req.LimitBytes, "messages", req.LimitMessages)
	return &storagev1.SetQuotaResponse{Quota: q}, nil
}

// parseAlias accepts local@domain or "@domain" (catch-all, local "@").
func parseAlias(alias string) (local, domain string, kind records.AddressRecord_Kind, err error) {
	if strings.HasPrefix(strings.TrimSpace(alias), "@") {
		domain, err = normalizeDomain(strings.TrimPrefix(strings.TrimSpace(alias), "@"))
		return "@", domain, records.AddressRecord_KIND_CATCH_ALL, err
	}
	local, domain, err = normalizeAddress(alias)
	return local, domain, records.AddressRecord_KIND_ALIAS, err
}

func aliasString(local, domain string) string {
	if local == "@" {
		return "@" + domain
	}
	return local + "@" + domain
}

func (s *Server) AddAlias(ctx context.Context, req *storagev1.AddAliasRequest) (*storagev1.AddAliasResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	local, domain, kind, err := parseAlias(req.Alias)
	if err != nil {
		return nil, err
	}
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		if _, ok, err := tx.Get(s.keys.Domain(domain)); err != nil {
			return err
		} else if !ok {
			return fail(reasonDomainNotFound, "domain %s is not local", domain)
		}
		if _, taken, err := tx.Get(s.keys.Address(domain, local)); err != nil {
			return err
		} else if taken {
			return fail(reasonAddressExists, "address %s is in use", aliasString(local, domain))
		}
		rec, err := s.loadAccount(tx, req.AccountId)
		if err != nil {
			return err
		}
		rec.Aliases = append(rec.Aliases, aliasString(local, domain))
		tx.Put(s.keys.Account(rec.Id), marshal(rec))
		tx.Put(s.keys.Address(domain, local), marshal(&records.AddressRecord{AccountId: rec.Id, Kind: kind}))
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("alias added", "alias", aliasString(local, domain), "account", req.AccountId)
	return &storagev1.AddAliasResponse{}, nil
}

func (s *Server) RemoveAlias(ctx context.Context, req *storagev1.RemoveAliasRequest) (*storagev1.RemoveAliasResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	local, domain, _, err := parseAlias(req.Alias)
	if err != nil {
		return nil, err
	}
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		addr := &records.AddressRecord{}
		ok, err := getRecord(tx, s.keys.Address(domain, local), addr)
		if err != nil {
			return err
		}
		if !ok || addr.Kind == records.AddressRecord_KIND_PRIMARY {
			return fail(reasonAccountNotFound, "%s is not an alias", aliasString(local, domain))
		}
		tx.Delete(s.keys.Address(domain, local))
		rec := &records.AccountRecord{}
		if ok, err := getRecord(tx, s.keys.Account(addr.AccountId), rec); err != nil {
			return err
		} else if ok {
			var kept []string
			for _, a := range rec.Aliases {
				if a != aliasString(local, domain) {
					kept = append(kept, a)
				}
			}
			rec.Aliases = kept
			tx.Put(s.keys.Account(rec.Id), marshal(rec))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("alias removed", "alias", aliasString(local, domain))
	return &storagev1.RemoveAliasResponse{}, nil
}

func (s *Server) Authenticate(ctx context.Context, req *storagev1.AuthenticateRequest) (*storagev1.AuthenticateResponse, error) {
	addr, err := s.loginAddress(ctx, req.Username)
	if err != nil {
		return nil, toStatus(err)
	}
	account := "" // the account the username names, if any (loginlimit.go)
	if addr != nil {
		account = addr.AccountId
	}
	locked, err := s.loginLocked(ctx, account, req.ClientIp)
	if err != nil {
		return nil, toStatus(err)
	}
	if locked {
		return nil, fail(reasonLoginLocked, "too many failed logins, try later")
	}
	resp, err := s.authenticate(ctx, addr, req.Password)
	if storagev1.ReasonOf(err) == reasonAuthFailed {
		if ferr := s.loginFailed(ctx, account, req.ClientIp); ferr != nil {
			s.log.Warn("counting a failed login", "err", ferr)
		}
	}
	if err == nil {
		resp.SessionToken, resp.SessionExpiresAt = s.issueSession(ctx, resp.Account.Id)
	}
	return resp, err
}

// loginAddress resolves a username to the address record it logs in as:
// an account's address or alias, spelled in any case, with surrounding
// space or a trailing dot on the domain. nil if it names no account (a
// catch-all is no login).
func (s *Server) loginAddress(ctx context.Context, username string) (*records.AddressRecord, error) {
	local, domain, err := normalizeAddress(username)
	if err != nil {
		return nil, nil
	}
	addr, err := s.lookupAddress(ctx, local, domain)
	if err != nil || addr == nil || addr.Kind == records.AddressRecord_KIND_CATCH_ALL {
		return nil, err
	}
	return addr, nil
}

// authenticate checks the password of the account addr names (nil: none,
// which fails after as long as a wrong password takes).
func (s *Server) authenticate(ctx context.Context, addr *records.AddressRecord, pass string) (*storagev1.AuthenticateResponse, error) {
	denied := fail(reasonAuthFailed, "authentication failed")
	var rec *records.AccountRecord
	var q *storagev1.Quota
	if addr != nil {
		var err error
		if rec, q, err = s.getAccount(ctx, addr.AccountId); err != nil {
			return nil, toStatus(err)
		}
	}
	if rec == nil {
		// An unknown account takes as long as a wrong password.
		if _, err := s.authCache.Verify(ctx, "", "", pass); err != nil {
			return nil, toStatus(err)
		}
		return nil, denied
	}
	ok, err := s.authCache.Verify(ctx, rec.Id, rec.PasswordHash, pass)
	if err != nil {
		return nil, toStatus(err)
	}
	if !ok || rec.Disabled {
		return nil, denied
	}
	return &storagev1.AuthenticateResponse{Account: accountView(rec, q)}, nil
}

// recipientDelimiter separates a subaddress: user+tag@domain → user@domain.
const recipientDelimiter = "+"

func (s *Server) ResolveRecipient(ctx context.Context, req *storagev1.ResolveRecipientRequest) (*storagev1.ResolveRecipientResponse, error) {
	local, domain, err := normalizeAddress(req.Address)
	if err != nil {
		return nil, err
	}
	res, err := s.resolve(ctx, local, domain)
	return res, toStatus(err)
}

// resolve finds the account for local@domain: the exact address, then without
// its +subaddress, then the domain's catch-all, for an RCPT answer. Both steps
// may come from the replica's cache (recipients.go); a delivery checks the
// account again in its own transaction.
func (s *Server) resolve(ctx context.Context, local, domain string) (*storagev1.ResolveRecipientResponse, error) {
	l, err := s.routeAddress(ctx, local, domain)
	if err != nil {
		return nil, err
	}
	if !l.domainKnown {
		return &storagev1.ResolveRecipientResponse{Result: storagev1.ResolveRecipientResponse_RESULT_NOT_LOCAL}, nil
	}
	for _, rt := range l.routes {
		rec, q, err := s.rcptAccount(ctx, rt.account)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		if rec.Disabled {
			return &storagev1.ResolveRecipientResponse{Result: storagev1.ResolveRecipientResponse_RESULT_DISABLED, Account: accountView(rec, q)}, nil
		}
		return &storagev1.ResolveRecipientResponse{Result: storagev1.ResolveRecipientResponse_RESULT_LOCAL, Account: accountView(rec, q)}, nil
	}
	return &storagev1.ResolveRecipientResponse{Result: storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER}, nil
}

func (s *Server) DeleteAccount(ctx context.Context, req *storagev1.DeleteAccountRequest) (*storagev1.DeleteAccountResponse, error) {
	defer s.recipients.clear() // this replica answers from the new directory at once
	id := req.AccountId
	if id == "" || strings.Contains(id, "/") {
		return nil, errInvalid("account id is required")
	}
	// Step 1: no more logins or deliveries. A delete that was interrupted
	// finds the account already marked and carries on.
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		rec := &records.AccountRecord{}
		ok, err := getRecord(tx, s.keys.Account(id), rec)
		if err != nil {
			return err
		}
		if !ok {
			return fail(reasonAccountNotFound, "no such account")
		}
		if rec.Deleting {
			return nil
		}
		for _, a := range append([]string{rec.Address}, rec.Aliases...) {
			local, domain, _ := strings.Cut(a, "@")
			if strings.HasPrefix(a, "@") {
				local, domain = "@", a[1:]
			}
			tx.Delete(s.keys.Address(domain, local))
		}
		rec.Deleting = true
		tx.Put(s.keys.Account(id), marshal(rec))
		// Every writer of the account's mailboxes reads its quota record:
		// without it they fail, so nothing new arrives while it is emptied.
		tx.Delete(s.keys.Quota(id))
		tx.Put(s.keys.Cleanup(id, "account"), cleanupStamp())
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.finishAccountDelete(ctx, id); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("account deleted", "account", id)
	return &storagev1.DeleteAccountResponse{}, nil
}

// hashNewPassword checks a password being set (its length) and hashes it.
func (s *Server) hashNewPassword(pw string) (string, error) {
	if n := utf8.RuneCountInString(pw); n < s.cfg.MinPasswordLength {
		return "", errInvalid("the password has %d characters; at least %d are required", n, s.cfg.MinPasswordLength)
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return "", errInvalid("%v", err)
	}
	return hash, nil
}
