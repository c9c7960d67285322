package imapconn

import (
	"errors"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267
// section 3): parsing, the backend's interface and the responses.

// Sort keys (RFC 5256 section 3; DISPLAYFROM and DISPLAYTO from RFC 5957).
const (
	SortArrival     = "ARRIVAL"
	SortCc          = "CC"
	SortDate        = "DATE"
	SortFrom        = "FROM"
	SortSize        = "SIZE"
	SortSubject     = "SUBJECT"
	SortTo          = "TO"
	SortDisplayFrom = "DISPLAYFROM"
	SortDisplayTo   = "DISPLAYTO"
)

var sortKeys = map[string]bool{SortArrival: true, SortCc: true, SortDate: true, SortFrom: true, SortSize: true,
	SortSubject: true, SortTo: true, SortDisplayFrom: true, SortDisplayTo: true}

// SortCriterion is one sort-criterion: a key, maybe REVERSE.
type SortCriterion struct {
	Key     string
	Reverse bool
}

// SortArgs are SORT's arguments.
type SortArgs struct {
	Keys     []SortCriterion
	Charset  string
	Criteria *imap.SearchCriteria
	// Return is ESORT's RETURN options (RFC 5267 section 3); nil for a
	// plain SORT (answered with "* SORT").
	Return *imap.SearchOptions
}

// ThreadArgs are THREAD's arguments.
type ThreadArgs struct {
	Algorithm imap.ThreadAlgorithm
	Charset   string
	Criteria  *imap.SearchCriteria
}

// ThreadNode is one message of a thread tree; Num 0 is a placeholder for a
// message that is not there (a parent known only from References).
type ThreadNode struct {
	Num      uint32
	Children []*ThreadNode
}

// Sorter is implemented by sessions that back SORT and THREAD.
type Sorter interface {
	// Sort returns the matching messages' numbers (kind) in sort order,
	// and with a MODSEQ criterion the highest modseq among them (RFC 7162
	// section 3.1.5; else 0). ret is ESORT's RETURN options (nil for a
	// plain SORT); with SAVE the result is kept for "$" (RFC 5182).
	Sort(kind NumKind, keys []SortCriterion, criteria *imap.SearchCriteria, ret *imap.SearchOptions) ([]uint32, uint64, error)
	// Thread returns the matching messages' threads, in order.
	Thread(kind NumKind, alg imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]*ThreadNode, error)
}

// SearchResultResetter is implemented by sessions that keep RFC 5182's
// search result variable ("$").
type SearchResultResetter interface {
	// ResetSearchResult sets "$" to the empty sequence.
	ResetSearchResult()
}

// resetSavedOnNo applies RFC 5182 section 2.1 to a SEARCH or SORT with the
// SAVE result option that failed: "A SEARCH command with the SAVE result
// option that caused the server to return the NO tagged response sets the
// value of the search result variable to the empty sequence", while one
// answered BAD "MUST NOT change the search result variable".
func (c *Conn) resetSavedOnNo(err error) {
	if err == nil {
		return
	}
	var ie *imap.Error
	var se *SyntaxError
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeBad || errors.As(err, &se) {
		return // answered BAD
	}
	if r, ok := c.session.(SearchResultResetter); ok {
		r.ResetSearchResult()
	}
}

// ParseSort reads ["RETURN" SP "(" ... ")" SP] sort-criteria SP charset
// 1*(SP search-key) (RFC 5256 section 5, RFC 5267 section 3).
func (d *Decoder) ParseSort(uid bool) (*SortArgs, error) {
	a := &SortArgs{Criteria: &imap.SearchCriteria{}}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.acceptWord("RETURN") {
		if err := d.SP(); err != nil {
			return nil, err
		}
		// SAVE: RFC 5182 section 1, the result of "any command based
		// on SEARCH, e.g., SORT" may be saved (SEARCHRES is announced).
		o := &imap.SearchOptions{}
		err := d.atomOptions("SORT return option", map[string]*bool{
			"MIN": &o.ReturnMin, "MAX": &o.ReturnMax, "ALL": &o.ReturnAll, "COUNT": &o.ReturnCount,
			"SAVE": &o.ReturnSave})
		if err != nil {
			return nil, err
		}
		if !o.ReturnMin && !o.ReturnMax && !o.ReturnCount && !o.ReturnSave {
			o.ReturnAll = true // RFC 4731 section 3.1: "RETURN ()" is ALL
		}
		a.Return = o
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	err := d.ParenList(false, func() error {
		key, err := d.Atom()
		if err != nil {
			return err
		}
		key = strings.ToUpper(key)
		var c SortCriterion
		if key == "REVERSE" {
			c.Reverse = true
			if err := d.SP(); err != nil {
				return err
			}
			if key, err = d.Atom(); err != nil {
				return err
			}
			key = strings.ToUpper(key)
		}
		if !sortKeys[key] {
			return syntaxErr("unknown sort key %s", key)
		}
		c.Key = key
		a.Keys = append(a.Keys, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if a.Charset, err = d.searchCharset(); err != nil {
		return nil, err
	}
	return a, d.searchKeys(a.Criteria, uid)
}

// ParseThread reads thread-alg SP charset 1*(SP search-key) (RFC 5256
// section 5).
func (d *Decoder) ParseThread(uid bool) (*ThreadArgs, error) {
	a := &ThreadArgs{Criteria: &imap.SearchCriteria{}}
	if err := d.SP(); err != nil {
		return nil, err
	}
	alg, err := d.Atom()
	if err != nil {
		return nil, err
	}
	switch a.Algorithm = imap.ThreadAlgorithm(strings.ToUpper(alg)); a.Algorithm {
	case imap.ThreadOrderedSubject, imap.ThreadReferences:
	default:
		return nil, syntaxErr("unknown threading algorithm %s", alg)
	}
	if a.Charset, err = d.searchCharset(); err != nil {
		return nil, err
	}
	return a, d.searchKeys(a.Criteria, uid)
}

// searchCharset reads SP charset (mandatory in SORT and THREAD).
func (d *Decoder) searchCharset() (string, error) {
	if err := d.SP(); err != nil {
		return "", err
	}
	cs, err := d.AString()
	if err != nil {
		return "", err
	}
	return strings.ToUpper(cs), nil
}

// searchKeys reads 1*(SP search-key) into c.
func (d *Decoder) searchKeys(c *imap.SearchCriteria, uid bool) error {
	if err := d.SP(); err != nil {
		return err
	}
	for {
		if err := d.searchKey(c, uid); err != nil {
			return err
		}
		if !d.accept(' ') {
			return nil
		}
	}
}

// checkCharset refuses what SEARCH, SORT and THREAD cannot decode.
func checkCharset(cs string) error {
	if cs != "" && cs != "UTF-8" && cs != "US-ASCII" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeBadCharset, Text: "Only UTF-8 and US-ASCII are supported"}
	}
	return nil
}

// sorter checks SORT's or THREAD's charset, announces new messages (as
// SEARCH: before a result names them) and returns the session's Sorter.
func (c *Conn) sorter(charset string) (Sorter, error) {
	if err := checkCharset(charset); err != nil {
		return nil, err
	}
	s, ok := c.session.(Sorter)
	if !ok {
		return nil, syntaxErr("SORT and THREAD are not available")
	}
	return s, c.poll(false)
}

// sortCmd runs SORT or UID SORT.
func (c *Conn) sortCmd(tag string, kind NumKind) (err error) {
	args, err := c.dec.ParseSort(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if args.Return != nil && args.Return.ReturnSave {
		defer func() { c.resetSavedOnNo(err) }()
	}
	s, err := c.sorter(args.Charset)
	if err != nil {
		return err
	}
	if UsesModSeq(args.Criteria) {
		c.condstore = true // RFC 7162 3.1: a CONDSTORE enabling command
	}
	nums, modSeq, err := s.Sort(kind, args.Keys, args.Criteria, args.Return)
	if err != nil {
		return err
	}
	if o := args.Return; o != nil {
		// RFC 5182 (as for SEARCH): SAVE alone suppresses the ESEARCH
		// response.
		if o.ReturnMin || o.ReturnMax || o.ReturnAll || o.ReturnCount {
			c.enc.ESort(tag, kind == NumKindUID, nums, modSeq, o)
		}
	} else {
		c.enc.Sort(nums, modSeq)
	}
	return c.ok(tag, "SORT")
}

// threadCmd runs THREAD or UID THREAD.
func (c *Conn) threadCmd(tag string, kind NumKind) error {
	args, err := c.dec.ParseThread(kind == NumKindUID)
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	s, err := c.sorter(args.Charset)
	if err != nil {
		return err
	}
	threads, err := s.Thread(kind, args.Algorithm, args.Criteria)
	if err != nil {
		return err
	}
	c.enc.Thread(threads)
	return c.ok(tag, "THREAD")
}

// Sort writes "* SORT" *(SP nz-number) [SP "(MODSEQ" SP n ")"] CRLF
// (RFC 7162 section 3.1.5: the MODSEQ when the criteria had one and
// something matched).
func (e *Encoder) Sort(nums []uint32, modSeq uint64) error {
	e.Atom("* SORT")
	for _, n := range nums {
		e.SP().Number(n)
	}
	if modSeq != 0 && len(nums) > 0 {
		e.Atom(" (MODSEQ ").Number64(modSeq).Special(')')
	}
	e.CRLF()
	return e.err
}

// ESort writes ESORT's ESEARCH response (RFC 5267 section 3): MIN and MAX
// are the first and last messages in sort order, ALL lists them in sort
// order (a range only where the numbers ascend one by one).
func (e *Encoder) ESort(tag string, uid bool, nums []uint32, modSeq uint64, ret *imap.SearchOptions) error {
	e.Atom("* ESEARCH")
	if tag != "" {
		e.Atom(" (TAG ").String(tag).Special(')')
	}
	if uid {
		e.Atom(" UID")
	}
	if len(nums) > 0 {
		if ret.ReturnMin {
			e.Atom(" MIN ").Number(nums[0])
		}
		if ret.ReturnMax {
			e.Atom(" MAX ").Number(nums[len(nums)-1])
		}
	}
	if ret.ReturnCount {
		e.Atom(" COUNT ").Number(uint32(len(nums)))
	}
	if ret.ReturnAll && len(nums) > 0 {
		e.Atom(" ALL ")
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
				j++
			}
			if i > 0 {
				e.Special(',')
			}
			e.Number(nums[i])
			if j > i {
				e.Special(':').Number(nums[j])
			}
			i = j + 1
		}
	}
	if modSeq != 0 && len(nums) > 0 {
		e.Atom(" MODSEQ ").Number64(modSeq)
	}
	e.CRLF()
	return e.err
}

// Thread writes "* THREAD" *thread-list CRLF (RFC 5256 section 5).
func (e *Encoder) Thread(threads []*ThreadNode) error {
	e.Atom("* THREAD")
	if len(threads) > 0 {
		e.SP()
	}
	for _, t := range threads {
		e.Special('(')
		e.threadMembers(t)
		e.Special(')')
	}
	e.CRLF()
	return e.err
}

// threadMembers writes a node, its only child's chain, and its children
// when there are several, each as a nested thread-list.
func (e *Encoder) threadMembers(n *ThreadNode) {
	first := true
	for {
		if n.Num != 0 {
			if !first {
				e.SP()
			}
			e.Number(n.Num)
			first = false
		}
		if len(n.Children) != 1 {
			break
		}
		n = n.Children[0]
	}
	if len(n.Children) == 0 {
		return
	}
	if !first {
		e.SP()
	}
	for _, ch := range n.Children {
		e.Special('(')
		e.threadMembers(ch)
		e.Special(')')
	}
}

// sortCaps are announced after login when the session is a Sorter.
var sortCaps = []imap.Cap{imap.CapSort, imap.CapSortDisplay, imap.CapESort,
	imap.Cap("THREAD=" + string(imap.ThreadOrderedSubject)), imap.Cap("THREAD=" + string(imap.ThreadReferences))}
