// Package keys is the etcd key layout of the storage tier, in one place.
//
// Every key lives under one configurable prefix (default "/mailfleet/v1/"). Apart
// from the domain list, the address directory, the body reference counts and the
// outbound queue (all per cell), every key is scoped to one account, so that
// accounts can later be spread over several cells (an etcd cluster and a bucket
// each) without a rewrite.
//
//	domains/<domain>                         Domain
//	dkim/<domain>                            DKIMKey (private key included): the signing key
//	dkim-retired/<domain>/<selector>         DKIMKey rotated out, kept until removed
//	addresses/<domain>/<local part>          AddressRecord ("@" as local part =
//	                                         the domain's catch-all)
//	accounts/<id>/account                    AccountRecord (password hash)
//	accounts/<id>/quota                      Quota (limits and usage, one key so that
//	                                         one compare covers both)
//	accounts/<id>/locks/<name>               holder's lock id (on an etcd lease)
//	accounts/<id>/mailboxes/<mailbox id>     Mailbox (UIDVALIDITY, UIDNEXT,
//	                                         HIGHESTMODSEQ, counters)
//	accounts/<id>/names/<mailbox name>       mailbox id
//	accounts/<id>/messages/<mailbox id>/<uid as 10 digits>
//	                                         index entry: 0x02 + Entry (version 2),
//	                                         or a whole storage.v1 Message (version 1)
//	accounts/<id>/moving/<op id>/<uid>       UIDSet: source UIDs a staged MOVE copied
//	                                         (one record per step, from its first UID)
//	accounts/<id>/vanished/<mailbox id>/<modseq as 20 digits>
//	                                         Vanished: the UIDs one transaction
//	                                         expunged (QRESYNC), pruned by count
//	                                         and age (Mailbox.expunge_log)
//	accounts/<id>/subscriptions/<name>       "": a subscription to a name that has no
//	                                         mailbox (the mailbox record keeps the others)
//	accounts/<id>/recent/<mailbox id>        the \Recent cutoff (decimal UID): UIDs
//	                                         below it were claimed by a session
//	                                         (IMAP4rev1 \Recent, ClaimRecent)
//	accounts/<id>/deleting/<mailbox id>      Mailbox of a deleted mailbox whose
//	                                         entries are still being removed
//	cleanup/<account id>/<mailbox id>        a deleted mailbox to empty (unix ms)
//	cleanup/<account id>/account             a deleted account to remove (unix ms)
//	cleanup/<account id>/move-<op id>        MoveCleanup: a published MOVE's sources to remove
//	cleanup/<account id>/staging-<mailbox>   a staging in progress (unix ms), reaped if abandoned
//	bodies/<body key>                        BodyRef (reference count)
//	gc/<body key>                            GCMarker (legacy: one body unreferenced
//	                                         since; still swept)
//	freed/<unix ms, 16 digits>/<id>          FreedBodies (bodies unreferenced in one
//	                                         transaction; swept after the grace)
//	uploads/<body key>                       "" on the uploading replica's lease: an
//	                                         upload in flight (its body is not an orphan)
//	queue/items/<id>                         QueueRecord
//	queue/due/<unix ms, 16 digits>/<id>      "" (the due index)
//	queue/leases/<id>                        lease id (attached to an etcd lease)
//	locks/sweeper                            the orphan sweeper's election
//	locks/defrag/<lease id>                  the etcd defragmentation election
//	loginfail/user/<username>                LoginFailures (on an etcd lease)
//	loginfail/ip/<client address>            LoginFailures (on an etcd lease)
//	migrations/<name>                        "done": a finished migration of the layout
//	secrets/session-key                      the key that signs session tokens (authz)
//	holds/<id>                               "" on a backup's or restore's etcd lease:
//	                                         the sweeper deletes no body meanwhile
//
// Next to each body, the body store keeps summaries/<body key>: the body's
// Summary (envelope and MIME tree), written once at upload.
package keys

import "fmt"

// DefaultPrefix is the prefix every key lives under unless configured otherwise.
const DefaultPrefix = "/mailfleet/v1/"

// Layout builds keys under one prefix.
type Layout struct {
	Prefix string
}

func (l Layout) Domain(name string) string { return l.Prefix + "domains/" + name }
func (l Layout) Domains() string           { return l.Prefix + "domains/" }
func (l Layout) DKIM(domain string) string { return l.Prefix + "dkim/" + domain }

// RetiredDKIM is a domain's key rotated out under selector; "" gives the
// prefix of all of the domain's retired keys.
func (l Layout) RetiredDKIM(domain, selector string) string {
	return l.Prefix + "dkim-retired/" + domain + "/" + selector
}

// Address is the directory key of local@domain; local "@" is the catch-all.
func (l Layout) Address(domain, local string) string {
	return l.Prefix + "addresses/" + domain + "/" + local
}
func (l Layout) DomainAddresses(domain string) string { return l.Prefix + "addresses/" + domain + "/" }
func (l Layout) Addresses() string                    { return l.Prefix + "addresses/" }

func (l Layout) Accounts() string                  { return l.Prefix + "accounts/" }
func (l Layout) AccountRoot(account string) string { return l.Prefix + "accounts/" + account + "/" }
func (l Layout) Account(account string) string     { return l.AccountRoot(account) + "account" }
func (l Layout) Quota(account string) string       { return l.AccountRoot(account) + "quota" }
func (l Layout) Lock(account, name string) string  { return l.AccountRoot(account) + "locks/" + name }

func (l Layout) Mailboxes(account string) string { return l.AccountRoot(account) + "mailboxes/" }
func (l Layout) Mailbox(account, mailboxID string) string {
	return l.Mailboxes(account) + mailboxID
}
func (l Layout) Deleting(account, mailboxID string) string {
	return l.AccountRoot(account) + "deleting/" + mailboxID
}
func (l Layout) MoveChunks(account, opID string) string {
	return l.AccountRoot(account) + "moving/" + opID + "/"
}
func (l Layout) MoveChunk(account, opID string, firstUID uint32) string {
	return l.MoveChunks(account, opID) + fmt.Sprintf("%010d", firstUID)
}

// VanishedAll is the prefix of one mailbox's expunge records; modseqs are
// zero-padded so that etcd's byte order is modseq order.
func (l Layout) VanishedAll(account, mailboxID string) string {
	return l.AccountRoot(account) + "vanished/" + mailboxID + "/"
}
func (l Layout) Vanished(account, mailboxID string, modseq uint64) string {
	return l.VanishedAll(account, mailboxID) + fmt.Sprintf("%020d", modseq)
}

// Subscriptions is the prefix of the subscriptions to names without a
// mailbox; Subscription is one.
func (l Layout) Subscriptions(account string) string {
	return l.AccountRoot(account) + "subscriptions/"
}
func (l Layout) Subscription(account, name string) string {
	return l.Subscriptions(account) + name
}

// Recent is a mailbox's \Recent cutoff.
func (l Layout) Recent(account, mailboxID string) string {
	return l.AccountRoot(account) + "recent/" + mailboxID
}

func (l Layout) AllDeleting(account string) string { return l.AccountRoot(account) + "deleting/" }

// Cleanup marks unfinished removals (a mailbox's entries, or a whole
// account with the name "account") that any replica may resume.
func (l Layout) Cleanup(account, name string) string {
	return l.Prefix + "cleanup/" + account + "/" + name
}
func (l Layout) AccountCleanups(account string) string {
	return l.Prefix + "cleanup/" + account + "/"
}
func (l Layout) Cleanups() string { return l.Prefix + "cleanup/" }

func (l Layout) Names(account string) string { return l.AccountRoot(account) + "names/" }
func (l Layout) Name(account, name string) string {
	return l.Names(account) + name
}

// Messages is the prefix of one mailbox's index entries; UIDs are zero-padded
// so that etcd's byte order is UID order.
func (l Layout) Messages(account, mailboxID string) string {
	return l.AccountRoot(account) + "messages/" + mailboxID + "/"
}
func (l Layout) Message(account, mailboxID string, uid uint32) string {
	return l.Messages(account, mailboxID) + fmt.Sprintf("%010d", uid)
}

func (l Layout) Bodies() string             { return l.Prefix + "bodies/" }
func (l Layout) Body(key string) string     { return l.Prefix + "bodies/" + key }
func (l Layout) GCMarkers() string          { return l.Prefix + "gc/" }
func (l Layout) GCMarker(key string) string { return l.Prefix + "gc/" + key }
func (l Layout) FreedAll() string           { return l.Prefix + "freed/" }

// Freed is a FreedBodies record's key: time-ordered, so the sweeper reads
// only those past the grace period.
func (l Layout) Freed(unixMilli int64, id string) string {
	return fmt.Sprintf("%sfreed/%016d/%s", l.Prefix, unixMilli, id)
}
func (l Layout) FreedBefore(unixMilli int64) string {
	return fmt.Sprintf("%sfreed/%016d", l.Prefix, unixMilli)
}
func (l Layout) Upload(key string) string { return l.Prefix + "uploads/" + key }

func (l Layout) QueueItems() string          { return l.Prefix + "queue/items/" }
func (l Layout) QueueItem(id string) string  { return l.Prefix + "queue/items/" + id }
func (l Layout) QueueDueAll() string         { return l.Prefix + "queue/due/" }
func (l Layout) QueueLease(id string) string { return l.Prefix + "queue/leases/" + id }
func (l Layout) QueueDue(unixMilli int64, id string) string {
	return fmt.Sprintf("%squeue/due/%016d/%s", l.Prefix, unixMilli, id)
}

// Migration marks a finished migration of the stored layout (migrate.go).
func (l Layout) Migration(name string) string { return l.Prefix + "migrations/" + name }

// SessionKey holds the key that signs session tokens (authz).
func (l Layout) SessionKey() string { return l.Prefix + "secrets/session-key" }

func (l Layout) SweeperLock() string { return l.Prefix + "locks/sweeper" }

// Holds are the backups and restores in progress; Hold is one of them.
func (l Layout) Holds() string         { return l.Prefix + "holds/" }
func (l Layout) Hold(id string) string { return l.Prefix + "holds/" + id }

// DefragElection is the election (etcd adds "/<lease id>") that picks the
// one replica of the cell that defragments etcd.
func (l Layout) DefragElection() string { return l.Prefix + "locks/defrag" }

// LoginFailures counts failed logins of one username or client address
// (kind "user" or "ip").
func (l Layout) LoginFailures(kind, name string) string {
	return l.Prefix + "loginfail/" + kind + "/" + name
}

// PrefixEnd returns the end of the range that covers every key starting with p.
func PrefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}
