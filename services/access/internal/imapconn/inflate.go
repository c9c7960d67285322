package imapconn

import (
	"bufio"
	"errors"
	"io"
)

// inflater decodes the client's side of COMPRESS=DEFLATE: a raw DEFLATE
// stream (RFC 1951) that never ends, with a flush after every command.
//
// Why not compress/flate: a client may flush with zlib's Z_PARTIAL_FLUSH
// (mbsync does), which ends the data block but leaves part of an empty
// block that follows it in the client's buffer until its next write. The
// standard reader hands decoded bytes on only when a stored block ends or
// its window fills, and klauspost's reads several bits ahead of the symbol
// it decodes; both then wait for input the client sends only after it got
// an answer. This decoder returns every byte as soon as it is decoded and
// never waits for a bit it does not need yet: once a Read has produced
// something, it stops before any step whose input has not arrived, and
// takes the step again, from its first bit, on the next Read.
//
// Symbols are decoded one bit at a time from the canonical code (RFC 1951
// section 3.2.2): client-to-server traffic is commands and the odd APPEND.
type inflater struct {
	br *bufio.Reader

	// The bit buffer, least significant bit first, and what it held at the
	// last completed step; peeked counts the bytes the current step has
	// taken from br without discarding them yet.
	bits, doneBits   uint64
	nbits, doneNbits uint
	peeked           int
	produced         int // bytes the current Read has produced

	window  [1 << 15]byte
	wpos    int
	wrapped bool

	inBlock, final bool
	stored         int // bytes left of a stored block
	copyLen        int // bytes left of a back-reference
	copyDist       int
	lit, dist      *huffman
	dynLit         huffman
	dynDist        huffman
	err            error
}

// errWouldWait stops a step whose input has not arrived yet.
var errWouldWait = errors.New("inflate: input not there yet")

var errCorrupt = errors.New("inflate: corrupt DEFLATE stream")

func newInflater(br *bufio.Reader) *inflater { return &inflater{br: br} }

func (z *inflater) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	z.produced = 0
	for z.produced < len(p) && z.err == nil {
		err := z.step(p)
		if err == errWouldWait {
			z.rollback()
			break
		}
		if err != nil {
			z.err = err
		}
	}
	if z.produced > 0 {
		return z.produced, nil
	}
	return 0, z.err
}

// nextByte takes the next input byte for the current step.
func (z *inflater) nextByte() (byte, error) {
	if z.produced > 0 && z.peeked >= z.br.Buffered() {
		return 0, errWouldWait
	}
	b, err := z.br.Peek(z.peeked + 1)
	if len(b) <= z.peeked {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	z.peeked++
	return b[z.peeked-1], nil
}

// take returns the next n bits (n <= 16).
func (z *inflater) take(n uint) (int, error) {
	for z.nbits < n {
		b, err := z.nextByte()
		if err != nil {
			return 0, err
		}
		z.bits |= uint64(b) << z.nbits
		z.nbits += 8
	}
	v := int(z.bits & (1<<n - 1))
	z.bits >>= n
	z.nbits -= n
	return v, nil
}

// commit ends a step: its input is consumed.
func (z *inflater) commit() {
	z.br.Discard(z.peeked)
	z.peeked = 0
	z.doneBits, z.doneNbits = z.bits, z.nbits
}

// rollback undoes the bits an unfinished step took.
func (z *inflater) rollback() {
	z.peeked = 0
	z.bits, z.nbits = z.doneBits, z.doneNbits
}

func (z *inflater) emit(p []byte, b byte) {
	p[z.produced] = b
	z.produced++
	z.window[z.wpos] = b
	z.wpos = (z.wpos + 1) & (len(z.window) - 1)
	if z.wpos == 0 {
		z.wrapped = true
	}
}

// step decodes one unit: a block header, a literal, a back-reference, or
// part of a stored block or of a back-reference's copy.
func (z *inflater) step(p []byte) error {
	switch {
	case z.copyLen > 0:
		for z.copyLen > 0 && z.produced < len(p) {
			z.emit(p, z.window[(z.wpos-z.copyDist)&(len(z.window)-1)])
			z.copyLen--
		}
		return nil
	case z.stored > 0:
		n := min(z.stored, len(p)-z.produced)
		if z.produced > 0 {
			if n = min(n, z.br.Buffered()); n == 0 {
				return errWouldWait
			}
		}
		buf := p[z.produced : z.produced+n]
		m, err := z.br.Read(buf)
		for _, b := range buf[:m] {
			z.emit(p, b)
		}
		z.stored -= m
		if z.stored == 0 {
			z.inBlock = false
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	case !z.inBlock:
		if z.final {
			return io.EOF
		}
		return z.header()
	}
	sym, err := z.decode(z.lit)
	if err != nil {
		return err
	}
	switch {
	case sym < 256:
		z.commit()
		z.emit(p, byte(sym))
		return nil
	case sym == 256:
		z.commit()
		z.inBlock = false
		return nil
	case sym > 285:
		return errCorrupt
	}
	extra, err := z.take(uint(lengthExtra[sym-257]))
	if err != nil {
		return err
	}
	length := int(lengthBase[sym-257]) + extra
	dsym, err := z.decode(z.dist)
	if err != nil {
		return err
	}
	if dsym >= 30 {
		return errCorrupt
	}
	if extra, err = z.take(uint(distExtra[dsym])); err != nil {
		return err
	}
	dist := int(distBase[dsym]) + extra
	if !z.wrapped && dist > z.wpos {
		return errCorrupt // before the start of the stream
	}
	z.commit()
	z.copyLen, z.copyDist = length, dist
	return nil
}

// header reads a block header (RFC 1951 section 3.2.3) and, for a
// dynamic block, its code tables (section 3.2.7).
func (z *inflater) header() error {
	final, err := z.take(1)
	if err != nil {
		return err
	}
	kind, err := z.take(2)
	if err != nil {
		return err
	}
	switch kind {
	case 0: // stored: byte-aligned LEN and its complement NLEN
		z.bits >>= z.nbits % 8
		z.nbits -= z.nbits % 8
		n, err := z.take(16)
		if err != nil {
			return err
		}
		nn, err := z.take(16)
		if err != nil {
			return err
		}
		if n != ^nn&0xffff {
			return errCorrupt
		}
		z.commit()
		z.stored = n
		z.inBlock = n > 0
	case 1:
		z.commit()
		z.lit, z.dist = &fixedLit, &fixedDist
		z.inBlock = true
	case 2:
		if err := z.dynamicTables(); err != nil {
			return err
		}
		z.commit()
		z.lit, z.dist = &z.dynLit, &z.dynDist
		z.inBlock = true
	default:
		return errCorrupt
	}
	z.final = final == 1
	return nil
}

// The order code length code lengths come in (RFC 1951 section 3.2.7).
var codeLengthOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (z *inflater) dynamicTables() error {
	hlit, err := z.take(5)
	if err != nil {
		return err
	}
	hdist, err := z.take(5)
	if err != nil {
		return err
	}
	hclen, err := z.take(4)
	if err != nil {
		return err
	}
	nlit, ndist := hlit+257, hdist+1
	if nlit > 286 || ndist > 30 {
		return errCorrupt
	}
	var clLengths [19]uint8
	for i := 0; i < hclen+4; i++ {
		v, err := z.take(3)
		if err != nil {
			return err
		}
		clLengths[codeLengthOrder[i]] = uint8(v)
	}
	var cl huffman
	if err := cl.build(clLengths[:]); err != nil {
		return err
	}
	var lengths [286 + 30]uint8
	for i := 0; i < nlit+ndist; {
		sym, err := z.decode(&cl)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var repeat int
		var value uint8
		switch sym {
		case 16:
			if i == 0 {
				return errCorrupt
			}
			value = lengths[i-1]
			n, err := z.take(2)
			if err != nil {
				return err
			}
			repeat = 3 + n
		case 17:
			n, err := z.take(3)
			if err != nil {
				return err
			}
			repeat = 3 + n
		default:
			n, err := z.take(7)
			if err != nil {
				return err
			}
			repeat = 11 + n
		}
		if i+repeat > nlit+ndist {
			return errCorrupt
		}
		for ; repeat > 0; repeat-- {
			lengths[i] = value
			i++
		}
	}
	if lengths[256] == 0 {
		return errCorrupt // no end-of-block code
	}
	if err := z.dynLit.build(lengths[:nlit]); err != nil {
		return err
	}
	return z.dynDist.build(lengths[nlit : nlit+ndist])
}

// huffman is a canonical prefix code: how many codes there are of each
// length, and the symbols in code order.
type huffman struct {
	count  [16]uint16
	symbol [288]uint16
}

// build makes the code from each symbol's code length (0 = unused). An
// over-subscribed set of lengths is refused; an incomplete one is allowed
// (RFC 1951 permits a single distance code), and decoding a code it lacks
// fails.
func (h *huffman) build(lengths []uint8) error {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return errCorrupt
		}
	}
	var offset [16]uint16
	for l := 1; l < 15; l++ {
		offset[l+1] = offset[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offset[l]] = uint16(sym)
			offset[l]++
		}
	}
	return nil
}

// decode reads one symbol, a bit at a time (codes are sent most
// significant bit first, RFC 1951 section 3.1.1).
func (z *inflater) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := z.take(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, errCorrupt
}

// Base values and extra bits of length codes 257..285 and distance codes
// 0..29 (RFC 1951 section 3.2.5).
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// The fixed codes (RFC 1951 section 3.2.6).
var fixedLit, fixedDist huffman

func init() {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	fixedLit.build(l[:])
	var d [30]uint8
	for i := range d {
		d[i] = 5
	}
	fixedDist.build(d[:])
}
