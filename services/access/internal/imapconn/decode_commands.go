package imapconn

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Arguments of each command, parsed into go-imap's types. Every function
// reads what follows the command name (from the SP before the first
// argument) up to, not including, the CRLF.

// sectionPartOK reads section-part: nz-number *("." nz-number), stopping
// before a "." that is followed by a letter (HEADER, TEXT, MIME).
func (d *Decoder) sectionPart() ([]int, error) {
	var part []int
	for {
		n, err := d.NZNumber()
		if err != nil {
			return nil, err
		}
		part = append(part, int(n))
		if d.peek() != '.' {
			return part, nil
		}
		next, _ := d.r.Peek(2)
		if len(next) < 2 || !isDigit(next[1]) {
			return part, nil
		}
		d.readByte()
	}
}

// headerList reads header-list: "(" header-fld-name *(SP header-fld-name) ")".
func (d *Decoder) headerList() ([]string, error) {
	var names []string
	err := d.ParenList(false, func() error {
		n, err := d.AString()
		names = append(names, n)
		return err
	})
	return names, err
}

// bodySection reads section = "[" [section-spec] "]" into s.
func (d *Decoder) bodySection(s *imap.FetchItemBodySection) error {
	if err := d.expect('[', "["); err != nil {
		return err
	}
	if d.accept(']') {
		return nil
	}
	if isDigit(d.peek()) {
		part, err := d.sectionPart()
		if err != nil {
			return err
		}
		s.Part = part
		if d.accept(']') {
			return nil
		}
		if err := d.expect('.', "."); err != nil {
			return err
		}
	}
	word, err := d.token(func(c byte) bool { return isAtomChar(c) && c != '[' && c != '<' }, "a section")
	if err != nil {
		return err
	}
	switch strings.ToUpper(word) {
	case "HEADER":
		s.Specifier = imap.PartSpecifierHeader
	case "TEXT":
		s.Specifier = imap.PartSpecifierText
	case "MIME":
		if len(s.Part) == 0 {
			return syntaxErr("MIME needs a part number")
		}
		s.Specifier = imap.PartSpecifierMIME
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		s.Specifier = imap.PartSpecifierHeader
		if err := d.SP(); err != nil {
			return err
		}
		names, err := d.headerList()
		if err != nil {
			return err
		}
		if strings.EqualFold(word, "HEADER.FIELDS") {
			s.HeaderFields = names
		} else {
			s.HeaderFieldsNot = names
		}
	default:
		return syntaxErr("unknown section %q", word)
	}
	return d.expect(']', "]")
}

// partial reads ["<" number "." nz-number ">"].
func (d *Decoder) partial() (*imap.SectionPartial, error) {
	if !d.accept('<') {
		return nil, nil
	}
	off, err := d.Number64()
	if err != nil {
		return nil, err
	}
	if err := d.expect('.', "."); err != nil {
		return nil, err
	}
	n, err := d.Number64()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, syntaxErr("a partial fetch needs a non-zero length")
	}
	return &imap.SectionPartial{Offset: off, Size: n}, d.expect('>', ">")
}

// binarySection reads section-binary = "[" [section-part] "]".
func (d *Decoder) binarySection() ([]int, error) {
	if err := d.expect('[', "["); err != nil {
		return nil, err
	}
	if d.accept(']') {
		return nil, nil
	}
	part, err := d.sectionPart()
	if err != nil {
		return nil, err
	}
	return part, d.expect(']', "]")
}

// FetchArgs are FETCH's arguments.
type FetchArgs struct {
	NumSet  imap.NumSet
	Options *imap.FetchOptions
	// RFC822 names the sections asked for as RFC822, RFC822.HEADER or
	// RFC822.TEXT (answered under those names), by index in
	// Options.BodySection.
	RFC822 map[int]string
	// Vanished: the VANISHED modifier (RFC 7162 3.2.6).
	Vanished bool
	// Ext: items of OBJECTID, SAVEDATE and PREVIEW (extensions.go).
	Ext FetchExt
}

// ParseFetch reads SP sequence-set SP (macro / fetch-att / list) [modifiers].
func (d *Decoder) ParseFetch(uid bool) (*FetchArgs, error) {
	a := &FetchArgs{Options: &imap.FetchOptions{}, RFC822: map[int]string{}}
	var err error
	if a.NumSet, err = d.argNumSet(uid); err != nil {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() == '(' {
		err = d.ParenList(false, func() error { return d.fetchAtt(a) })
	} else {
		err = d.fetchAtt(a)
	}
	if err != nil {
		return nil, err
	}
	if uid {
		a.Options.UID = true
	}
	if d.accept(' ') {
		// fetch-modifiers (RFC 7162: CHANGEDSINCE).
		err = d.ParenList(false, func() error {
			name, err := d.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(name) {
			case "CHANGEDSINCE":
				if err := d.SP(); err != nil {
					return err
				}
				n, err := d.modSeqValue()
				a.Options.ChangedSince, a.Options.ModSeq = n, true
				return err
			case "VANISHED":
				a.Vanished = true
				return nil
			}
			return syntaxErr("unknown FETCH modifier %s", name)
		})
	}
	return a, err
}

// fetchAtt reads one fetch-att (or a macro).
func (d *Decoder) fetchAtt(a *FetchArgs) error {
	name, err := d.token(func(c byte) bool { return isAtomChar(c) && c != '[' && c != '<' }, "a FETCH item")
	if err != nil {
		return err
	}
	o := a.Options
	switch strings.ToUpper(name) {
	case "ALL":
		o.Flags, o.InternalDate, o.RFC822Size, o.Envelope = true, true, true, true
	case "FAST":
		o.Flags, o.InternalDate, o.RFC822Size = true, true, true
	case "FULL":
		o.Flags, o.InternalDate, o.RFC822Size, o.Envelope = true, true, true, true
		o.BodyStructure = &imap.FetchItemBodyStructure{}
	case "ENVELOPE":
		o.Envelope = true
	case "FLAGS":
		o.Flags = true
	case "INTERNALDATE":
		o.InternalDate = true
	case "RFC822.SIZE":
		o.RFC822Size = true
	case "UID":
		o.UID = true
	case "MODSEQ":
		o.ModSeq = true
	case "BODYSTRUCTURE":
		o.BodyStructure = &imap.FetchItemBodyStructure{Extended: true}
	case "RFC822", "RFC822.HEADER", "RFC822.TEXT":
		s := &imap.FetchItemBodySection{}
		switch strings.ToUpper(name) {
		case "RFC822.HEADER":
			s.Specifier, s.Peek = imap.PartSpecifierHeader, true // RFC 3501: like BODY.PEEK[HEADER]
		case "RFC822.TEXT":
			s.Specifier = imap.PartSpecifierText
		}
		a.RFC822[len(o.BodySection)] = strings.ToUpper(name)
		o.BodySection = append(o.BodySection, s)
	case "BODY", "BODY.PEEK":
		if d.peek() != '[' {
			if strings.EqualFold(name, "BODY.PEEK") {
				return syntaxErr("BODY.PEEK needs a section")
			}
			if o.BodyStructure == nil {
				o.BodyStructure = &imap.FetchItemBodyStructure{}
			}
			return nil
		}
		s := &imap.FetchItemBodySection{Peek: strings.EqualFold(name, "BODY.PEEK")}
		if err := d.bodySection(s); err != nil {
			return err
		}
		if s.Partial, err = d.partial(); err != nil {
			return err
		}
		o.BodySection = append(o.BodySection, s)
	case "BINARY", "BINARY.PEEK":
		part, err := d.binarySection()
		if err != nil {
			return err
		}
		s := &imap.FetchItemBinarySection{Part: part, Peek: strings.EqualFold(name, "BINARY.PEEK")}
		if s.Partial, err = d.partial(); err != nil {
			return err
		}
		o.BinarySection = append(o.BinarySection, s)
	case "BINARY.SIZE":
		part, err := d.binarySection()
		if err != nil {
			return err
		}
		o.BinarySectionSize = append(o.BinarySectionSize, &imap.FetchItemBinarySectionSize{Part: part})
	default:
		if ok, err := d.fetchAttExt(a, name); ok {
			return err
		}
		return syntaxErr("unknown FETCH item %s", name)
	}
	return nil
}

// StoreArgs are STORE's arguments.
type StoreArgs struct {
	NumSet  imap.NumSet
	Flags   *imap.StoreFlags
	Options *imap.StoreOptions
	// Conditional: UNCHANGEDSINCE was given (Options.UnchangedSince may be 0).
	Conditional bool
}

// ParseStore reads SP sequence-set [SP store-modifiers] SP store-att-flags.
func (d *Decoder) ParseStore(uid bool) (*StoreArgs, error) {
	a := &StoreArgs{Flags: &imap.StoreFlags{}, Options: &imap.StoreOptions{}}
	var err error
	if a.NumSet, err = d.argNumSet(uid); err != nil {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() == '(' {
		// store-modifiers (RFC 7162: UNCHANGEDSINCE).
		err := d.ParenList(false, func() error {
			name, err := d.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(name, "UNCHANGEDSINCE") {
				return syntaxErr("unknown STORE modifier %s", name)
			}
			if err := d.SP(); err != nil {
				return err
			}
			n, err := d.Number64()
			a.Options.UnchangedSince, a.Conditional = uint64(n), true
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	item, err := d.Atom()
	if err != nil {
		return nil, err
	}
	item = strings.ToUpper(item)
	switch {
	case strings.HasPrefix(item, "+"):
		a.Flags.Op, item = imap.StoreFlagsAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		a.Flags.Op, item = imap.StoreFlagsDel, item[1:]
	default:
		a.Flags.Op = imap.StoreFlagsSet
	}
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.Flags.Silent = true
	default:
		return nil, syntaxErr("expected FLAGS or FLAGS.SILENT")
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() == '(' {
		a.Flags.Flags, err = d.FlagList()
	} else {
		// flag *(SP flag) without parentheses (RFC 3501 store-att-flags).
		for {
			f, ferr := d.Flag()
			if ferr != nil {
				return nil, ferr
			}
			a.Flags.Flags = append(a.Flags.Flags, f)
			if !d.accept(' ') {
				break
			}
		}
	}
	return a, err
}

// SearchArgs are SEARCH's arguments.
type SearchArgs struct {
	Criteria *imap.SearchCriteria
	Options  *imap.SearchOptions
	// Extended: the client asked with RETURN (an ESEARCH answer).
	Extended bool
	// Context: RFC 5267's return options (UPDATE, CONTEXT, PARTIAL).
	Context SearchContextOptions
	Charset string
}

// ParseSearch reads [SP "RETURN" SP "(" ... ")"] [SP "CHARSET" SP astring]
// 1*(SP search-key).
func (d *Decoder) ParseSearch(uid bool) (*SearchArgs, error) {
	a := &SearchArgs{Criteria: &imap.SearchCriteria{}, Options: &imap.SearchOptions{}}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.acceptWord("RETURN") {
		a.Extended = true
		if err := d.SP(); err != nil {
			return nil, err
		}
		o, ctx := a.Options, &a.Context
		if err := d.searchReturnOptions(o, ctx); err != nil {
			return nil, err
		}
		if !o.ReturnMin && !o.ReturnMax && !o.ReturnCount && !o.ReturnSave && !ctx.Update && !ctx.Context && ctx.Partial == nil {
			o.ReturnAll = true // RFC 4731 section 3.1: "RETURN ()" is ALL
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	if d.acceptWord("CHARSET") {
		if err := d.SP(); err != nil {
			return nil, err
		}
		cs, err := d.AString()
		if err != nil {
			return nil, err
		}
		a.Charset = strings.ToUpper(cs)
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	if !a.Extended {
		a.Options.ReturnAll = true // a plain SEARCH answers every match
	}
	for {
		if err := d.searchKey(a.Criteria, uid); err != nil {
			return nil, err
		}
		if !d.accept(' ') {
			return a, nil
		}
	}
}

// acceptWord consumes word (case-insensitive) if it is the next atom. It
// peeks one byte further at a time, so that it never waits for bytes past
// the end of the client's line.
func (d *Decoder) acceptWord(word string) bool {
	for i := 1; i <= len(word); i++ {
		next, err := d.r.Peek(i)
		if err != nil || !strings.EqualFold(string(next[i-1]), string(word[i-1])) {
			return false
		}
	}
	if next, err := d.r.Peek(len(word) + 1); err == nil && isAtomChar(next[len(word)]) {
		return false
	}
	for range word {
		d.readByte()
	}
	return true
}

// maxSearchDepth bounds the nesting of parentheses, NOT and OR in SEARCH.
const maxSearchDepth = 64

// searchKey reads one search-key into c (ANDed with what c has).
func (d *Decoder) searchKey(c *imap.SearchCriteria, uid bool) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxSearchDepth {
		return syntaxErr("search keys nested too deeply")
	}
	switch p := d.peek(); {
	case p == '(':
		return d.ParenList(false, func() error { return d.searchKey(c, uid) })
	case p == '*' || p == '$' || isDigit(p):
		set, err := d.NumSet(false)
		if err != nil {
			return err
		}
		if imap.IsSearchRes(set) {
			c.UID = append(c.UID, imap.SearchRes())
		} else {
			c.SeqNum = append(c.SeqNum, set.(imap.SeqSet))
		}
		return nil
	}
	key, err := d.Atom()
	if err != nil {
		return err
	}
	arg := func() (string, error) {
		if err := d.SP(); err != nil {
			return "", err
		}
		return d.AString()
	}
	date := func() (time.Time, error) {
		if err := d.SP(); err != nil {
			return time.Time{}, err
		}
		return d.Date()
	}
	header := func(name string) error {
		v, err := arg()
		c.Header = append(c.Header, imap.SearchCriteriaHeaderField{Key: name, Value: v})
		return err
	}
	flag := func(f imap.Flag, not bool) {
		if not {
			c.NotFlag = append(c.NotFlag, f)
		} else {
			c.Flag = append(c.Flag, f)
		}
	}
	switch strings.ToUpper(key) {
	case "ALL":
	case "ANSWERED", "UNANSWERED":
		flag(imap.FlagAnswered, strings.HasPrefix(strings.ToUpper(key), "UN"))
	case "DELETED", "UNDELETED":
		flag(imap.FlagDeleted, strings.HasPrefix(strings.ToUpper(key), "UN"))
	case "DRAFT", "UNDRAFT":
		flag(imap.FlagDraft, strings.HasPrefix(strings.ToUpper(key), "UN"))
	case "FLAGGED", "UNFLAGGED":
		flag(imap.FlagFlagged, strings.HasPrefix(strings.ToUpper(key), "UN"))
	case "SEEN", "UNSEEN":
		flag(imap.FlagSeen, strings.HasPrefix(strings.ToUpper(key), "UN"))
	case "RECENT":
		flag("\\Recent", false)
	case "NEW":
		flag("\\Recent", false)
		flag(imap.FlagSeen, true)
	case "OLD":
		flag("\\Recent", true)
	case "KEYWORD", "UNKEYWORD":
		if err := d.SP(); err != nil {
			return err
		}
		f, err := d.Atom()
		if err != nil {
			return err
		}
		flag(imap.Flag(f), strings.EqualFold(key, "UNKEYWORD"))
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		return header(strings.ToUpper(key[:1]) + strings.ToLower(key[1:]))
	case "HEADER":
		name, err := arg()
		if err != nil {
			return err
		}
		return header(name)
	case "BODY":
		v, err := arg()
		c.Body = append(c.Body, v)
		return err
	case "TEXT":
		v, err := arg()
		c.Text = append(c.Text, v)
		return err
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		t, err := date()
		if err != nil {
			return err
		}
		k := strings.ToUpper(key)
		sent := strings.HasPrefix(k, "SENT")
		since, before := &c.Since, &c.Before
		if sent {
			since, before = &c.SentSince, &c.SentBefore
		}
		switch strings.TrimPrefix(k, "SENT") {
		case "BEFORE":
			*before = laterOf(*before, t, true)
		case "SINCE":
			*since = laterOf(*since, t, false)
		case "ON":
			*since = laterOf(*since, t, false)
			*before = laterOf(*before, t.AddDate(0, 0, 1), true)
		}
	case "LARGER", "SMALLER":
		if err := d.SP(); err != nil {
			return err
		}
		n, err := d.Number64()
		if err != nil {
			return err
		}
		if strings.EqualFold(key, "LARGER") {
			c.Larger = max(c.Larger, n)
		} else if c.Smaller == 0 || n < c.Smaller {
			c.Smaller = n
		}
	case "UID":
		if err := d.SP(); err != nil {
			return err
		}
		set, err := d.NumSet(true)
		if err != nil {
			return err
		}
		c.UID = append(c.UID, set.(imap.UIDSet))
	case "NOT":
		if err := d.SP(); err != nil {
			return err
		}
		var sub imap.SearchCriteria
		if err := d.searchKey(&sub, uid); err != nil {
			return err
		}
		c.Not = append(c.Not, sub)
	case "OR":
		var pair [2]imap.SearchCriteria
		for i := range pair {
			if err := d.SP(); err != nil {
				return err
			}
			if err := d.searchKey(&pair[i], uid); err != nil {
				return err
			}
		}
		c.Or = append(c.Or, pair)
	case "MODSEQ":
		// RFC 7162: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer.
		if err := d.SP(); err != nil {
			return err
		}
		if d.peek() == '"' {
			if _, err := d.quoted(); err != nil {
				return err
			}
			if err := d.SP(); err != nil {
				return err
			}
			if _, err := d.Atom(); err != nil {
				return err
			}
			if err := d.SP(); err != nil {
				return err
			}
		}
		n, err := d.Number64()
		if err != nil {
			return err
		}
		c.ModSeq = &imap.SearchCriteriaModSeq{ModSeq: uint64(n)}
	default:
		if ok, err := d.searchKeyExt(c, key); ok {
			return err
		}
		return syntaxErr("unknown search key %s", key)
	}
	return nil
}

// laterOf narrows a date bound: the later SINCE, the earlier BEFORE.
func laterOf(cur, t time.Time, before bool) time.Time {
	if cur.IsZero() {
		return t
	}
	if before == t.Before(cur) {
		return t
	}
	return cur
}

// ListArgs are LIST's arguments (RFC 5258 LIST-EXTENDED included).
type ListArgs struct {
	Ref      string
	Patterns []string
	Options  *imap.ListOptions
	// Extended: selection or return options were given (or several
	// patterns): the answer follows RFC 5258.
	Extended bool
}

// ParseList reads SP [list-select-opts SP] mailbox SP mbox-or-pat
// [SP list-return-opts].
func (d *Decoder) ParseList() (*ListArgs, error) {
	a := &ListArgs{Options: &imap.ListOptions{}}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() == '(' {
		a.Extended = true
		o := a.Options
		err := d.atomOptions("LIST selection option", map[string]*bool{
			"SUBSCRIBED": &o.SelectSubscribed, "REMOTE": &o.SelectRemote,
			"RECURSIVEMATCH": &o.SelectRecursiveMatch, "SPECIAL-USE": &o.SelectSpecialUse})
		if err != nil {
			return nil, err
		}
		if a.Options.SelectRecursiveMatch && !a.Options.SelectSubscribed && !a.Options.SelectSpecialUse {
			// RFC 5258 section 3.1: RECURSIVEMATCH alone is an error.
			return nil, syntaxErr("RECURSIVEMATCH needs another selection option")
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	ref, err := d.Mailbox()
	if err != nil {
		return nil, err
	}
	a.Ref = ref
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() == '(' {
		a.Extended = true
		err = d.ParenList(false, func() error {
			p, err := d.ListMailbox()
			a.Patterns = append(a.Patterns, p)
			return err
		})
	} else {
		var p string
		p, err = d.ListMailbox()
		a.Patterns = append(a.Patterns, p)
	}
	if err != nil {
		return nil, err
	}
	if d.accept(' ') {
		if !d.acceptWord("RETURN") {
			return nil, syntaxErr("expected RETURN")
		}
		a.Extended = true
		if err := d.SP(); err != nil {
			return nil, err
		}
		err := d.ParenList(true, func() error {
			opt, err := d.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(opt) {
			case "SUBSCRIBED":
				a.Options.ReturnSubscribed = true
			case "CHILDREN":
				a.Options.ReturnChildren = true
			case "SPECIAL-USE":
				a.Options.ReturnSpecialUse = true
			case "STATUS":
				if err := d.SP(); err != nil {
					return err
				}
				a.Options.ReturnStatus, err = d.statusAtts()
				return err
			default:
				return syntaxErr("unknown LIST return option %s", opt)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ParseLSub reads SP mailbox SP list-mailbox.
func (d *Decoder) ParseLSub() (*ListArgs, error) {
	a := &ListArgs{Options: &imap.ListOptions{SelectSubscribed: true}}
	if err := d.SP(); err != nil {
		return nil, err
	}
	ref, err := d.Mailbox()
	if err != nil {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	p, err := d.ListMailbox()
	a.Ref, a.Patterns = ref, []string{p}
	return a, err
}

// statusAtts reads "(" status-att *(SP status-att) ")".
func (d *Decoder) statusAtts() (*imap.StatusOptions, error) {
	o := &imap.StatusOptions{}
	d.StatusMailboxID = false
	atts := map[string]*bool{
		"MAILBOXID": &d.StatusMailboxID, // RFC 8474 section 4.3
		"MESSAGES":  &o.NumMessages, "UIDNEXT": &o.UIDNext, "UIDVALIDITY": &o.UIDValidity, "UNSEEN": &o.NumUnseen,
		"DELETED": &o.NumDeleted, "SIZE": &o.Size, "RECENT": &o.NumRecent, "APPENDLIMIT": &o.AppendLimit,
		"HIGHESTMODSEQ": &o.HighestModSeq,
	}
	if d.peek() == '(' && d.peekEmptyList() {
		return nil, syntaxErr("STATUS needs at least one item")
	}
	return o, d.atomOptions("STATUS item", atts)
}

// atomOptions reads "(" [atom *(SP atom)] ")" where every atom names one of
// opts (in any case) and sets it.
func (d *Decoder) atomOptions(what string, opts map[string]*bool) error {
	return d.ParenList(true, func() error {
		name, err := d.Atom()
		if err != nil {
			return err
		}
		p, ok := opts[strings.ToUpper(name)]
		if !ok {
			return syntaxErr("unknown %s %s", what, name)
		}
		*p = true
		return nil
	})
}

// peekEmptyList reports whether "()" is next.
func (d *Decoder) peekEmptyList() bool {
	b, err := d.r.Peek(2)
	return err == nil && string(b) == "()"
}

// ParseStatus reads SP mailbox SP "(" status-att *(SP status-att) ")".
func (d *Decoder) ParseStatus() (string, *imap.StatusOptions, error) {
	name, err := d.ParseMailbox()
	if err != nil {
		return "", nil, err
	}
	if err := d.SP(); err != nil {
		return "", nil, err
	}
	o, err := d.statusAtts()
	return name, o, err
}

// ParseSelect reads SP mailbox [SP "(" select-param *(SP select-param) ")"].
// (RFC 7162's QRESYNC parameter is parsed and dropped: see
// ParseSelectQResync.)
func (d *Decoder) ParseSelect() (string, *imap.SelectOptions, error) {
	name, o, _, err := d.ParseSelectQResync()
	return name, o, err
}

// ParseCreate reads SP mailbox [SP "(" "USE" SP "(" use-attr ... ")" ")"].
func (d *Decoder) ParseCreate() (string, *imap.CreateOptions, error) {
	name, err := d.ParseMailbox()
	if err != nil {
		return "", nil, err
	}
	o := &imap.CreateOptions{}
	if d.accept(' ') {
		err = d.ParenList(false, func() error {
			p, err := d.Atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(p, "USE") {
				return syntaxErr("unknown CREATE parameter %s", p)
			}
			if err := d.SP(); err != nil {
				return err
			}
			return d.ParenList(false, func() error {
				if err := d.expect('\\', "a special-use attribute"); err != nil {
					return err
				}
				a, err := d.Atom()
				o.SpecialUse = append(o.SpecialUse, imap.MailboxAttr("\\"+a))
				return err
			})
		})
	}
	return name, o, err
}

// ParseMailbox reads SP mailbox (DELETE, SUBSCRIBE, UNSUBSCRIBE, EXAMINE).
func (d *Decoder) ParseMailbox() (string, error) {
	if err := d.SP(); err != nil {
		return "", err
	}
	return d.Mailbox()
}

// ParseRename reads SP mailbox SP mailbox.
func (d *Decoder) ParseRename() (from, to string, err error) {
	if from, err = d.ParseMailbox(); err != nil {
		return "", "", err
	}
	to, err = d.ParseMailbox()
	return from, to, err
}

// argNumSet reads SP sequence-set, the first argument of FETCH, STORE,
// COPY and MOVE.
func (d *Decoder) argNumSet(uid bool) (imap.NumSet, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	return d.NumSet(uid)
}

// ParseCopy reads SP sequence-set SP mailbox (COPY and MOVE).
func (d *Decoder) ParseCopy(uid bool) (imap.NumSet, string, error) {
	set, err := d.argNumSet(uid)
	if err != nil {
		return nil, "", err
	}
	name, err := d.ParseMailbox()
	return set, name, err
}

// ParseLogin reads SP userid SP password.
func (d *Decoder) ParseLogin() (user, pass string, err error) {
	if err = d.SP(); err != nil {
		return
	}
	if user, err = d.AString(); err != nil {
		return
	}
	if err = d.SP(); err != nil {
		return
	}
	pass, err = d.AString()
	return
}

// ParseAuthenticate reads SP auth-type [SP (base64 / "=")] (SASL-IR).
func (d *Decoder) ParseAuthenticate() (mech string, initial []byte, hasInitial bool, err error) {
	if err = d.SP(); err != nil {
		return
	}
	if mech, err = d.Atom(); err != nil {
		return
	}
	mech = strings.ToUpper(mech)
	if !d.accept(' ') {
		return mech, nil, false, nil
	}
	s, err := d.token(isAtomChar, "an initial response")
	if err != nil {
		return "", nil, false, err
	}
	if s == "=" {
		return mech, []byte{}, true, nil
	}
	initial, err = decodeBase64(s)
	return mech, initial, true, err
}

// ParseEnable reads 1*(SP capability).
func (d *Decoder) ParseEnable() ([]imap.Cap, error) {
	var caps []imap.Cap
	for d.accept(' ') {
		c, err := d.Atom()
		if err != nil {
			return nil, err
		}
		cp := imap.Cap(strings.ToUpper(c))
		if cp == "IMAP4REV2" {
			// Capability names are case-insensitive; this one's constant
			// is mixed-case (without this, ENABLE IMAP4rev2 never took).
			cp = imap.CapIMAP4rev2
		}
		caps = append(caps, cp)
	}
	if len(caps) == 0 {
		return nil, syntaxErr("ENABLE needs a capability")
	}
	return caps, nil
}

// ParseID reads SP ("(" string SP nstring *(SP string SP nstring) ")" / nil)
// (RFC 2971).
func (d *Decoder) ParseID() (map[string]string, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() != '(' {
		_, isNil, err := d.NString()
		if err == nil && !isNil {
			err = syntaxErr("expected a list or NIL")
		}
		return nil, err
	}
	fields := map[string]string{}
	err := d.ParenList(true, func() error {
		k, err := d.String()
		if err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return err
		}
		v, _, err := d.NString()
		if len(fields) >= 30 {
			return syntaxErr("too many ID fields")
		}
		fields[strings.ToLower(k)] = v
		return err
	})
	return fields, err
}

// ParseUIDSet reads SP sequence-set of UIDs (UID EXPUNGE).
func (d *Decoder) ParseUIDSet() (imap.UIDSet, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	set, err := d.NumSet(true)
	if err != nil {
		return nil, err
	}
	uids, ok := set.(imap.UIDSet)
	if !ok {
		return nil, syntaxErr("expected UIDs")
	}
	return uids, nil
}

// AppendMessage is one message of an APPEND (MULTIAPPEND has several).
type AppendMessage struct {
	Options *imap.AppendOptions
	Size    int64
	// NonSync: the client sends the literal without waiting (LITERAL+).
	NonSync bool
	// Binary: a literal8 (RFC 3516), which may contain NUL.
	Binary bool
	d      *Decoder
	utf8   bool
}

// ParseAppendMailbox reads SP mailbox; the messages follow (NextAppend).
func (d *Decoder) ParseAppendMailbox() (string, error) { return d.ParseMailbox() }

// NextAppend reads the next message's flags, date and literal header:
// SP [flag-list SP] [date-time SP] (literal / literal8 / "UTF8 (" literal8 ")").
// It returns nil at the end of the command. The caller must then call
// Accept (and read exactly Size bytes from Body) or refuse the message.
func (d *Decoder) NextAppend(first bool) (*AppendMessage, error) {
	if !first && d.AtEOL() {
		return nil, nil
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	m := &AppendMessage{Options: &imap.AppendOptions{}, d: d}
	if d.peek() == '(' {
		flags, err := d.FlagList()
		if err != nil {
			return nil, err
		}
		m.Options.Flags = flags
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	if d.peek() == '"' {
		t, err := d.DateTime()
		if err != nil {
			return nil, err
		}
		m.Options.Time = t
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	if d.acceptWord("UTF8") {
		// RFC 6855 section 4: UTF8 (literal8).
		if err := d.SP(); err != nil {
			return nil, err
		}
		if err := d.expect('(', "("); err != nil {
			return nil, err
		}
		m.utf8 = true
	}
	binary := d.peek() == '~'
	if m.utf8 && !binary {
		return nil, syntaxErr("UTF8 APPEND data is a literal8")
	}
	size, nonSync, err := d.literalHeader(binary)
	if err != nil {
		return nil, err
	}
	m.Size, m.NonSync, m.Binary = size, nonSync, binary
	return m, nil
}

// Accept lets the client send the literal (a continuation request for a
// synchronizing one) and returns a reader of exactly Size bytes; after it
// is read, End reads what closes the message.
func (m *AppendMessage) Accept(limit int64) error {
	return m.d.acceptLiteral(m.Size, limit, m.NonSync)
}

// Body reads the message's bytes.
func (m *AppendMessage) Body() *limitedBody {
	return &limitedBody{r: m.d.r, left: m.Size}
}

// End consumes what follows the literal of a UTF8 message (its ")").
func (m *AppendMessage) End() error {
	if m.utf8 {
		return m.d.expect(')', ")")
	}
	return nil
}

// limitedBody reads exactly n bytes of a literal.
type limitedBody struct {
	r    interface{ Read([]byte) (int, error) }
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, eof
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == eof && b.left > 0 {
		err = errUnexpectedEOF
	}
	return n, err
}

// Discard reads what is left of the literal.
func (b *limitedBody) Discard() error {
	buf := make([]byte, 32<<10)
	for b.left > 0 {
		if _, err := b.Read(buf); err != nil {
			return err
		}
	}
	return nil
}

// Left is how many bytes of the literal are still unread.
func (b *limitedBody) Left() int64 { return b.left }
