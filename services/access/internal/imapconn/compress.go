package imapconn

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	kflate "github.com/klauspost/compress/flate"
)

// COMPRESS=DEFLATE (RFC 4978): after the tagged OK both directions are raw
// deflate (RFC 1951, no zlib header).
//
// Memory: the deflate state exists only for connections that ask for it.
// The server's side writes through a stateless deflater: every write (the
// connection's buffer, flushed at the end of a command, before waiting for
// input and after each IDLE update) is compressed on its own, with tables
// borrowed from a pool while it runs, and ends byte-aligned with an empty
// stored block (as zlib's Z_SYNC_FLUSH), so that the client can decode it
// at once. Nothing is kept between writes: an idle compressed connection
// holds no compressor (compress/flate's writer holds about 600 KiB at any
// level). The client's side needs an inflater with its 32 KiB window (a
// peer may refer back that far), which is kept.

const capCompressDeflate imap.Cap = "COMPRESS=DEFLATE"

// compress runs "COMPRESS" SP algorithm (RFC 4978 section 3).
func (c *Conn) compress(tag string) error {
	if err := c.dec.SP(); err != nil {
		return err
	}
	mech, err := c.dec.Atom()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "DEFLATE") {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown compression mechanism " + mech}
	}
	if c.compressed {
		// RFC 4978 section 3: at most one compression layer.
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "COMPRESSIONACTIVE", Text: "DEFLATE is active already"}
	}
	c.enc.StatusResponse(tag, imap.StatusResponseTypeOK, "", nil, "DEFLATE active")
	if err := c.flush(); err != nil {
		return err
	}
	// What the client sent after the command (it should wait for the OK,
	// but may not) is in c.br already, compressed: the inflater reads it
	// from there first, then from the connection.
	// The client's flushes may leave part of a block for later (zlib's
	// Z_PARTIAL_FLUSH): the inflater hands on what it decoded before
	// waiting for more (see inflater).
	zr := newInflater(c.br)
	zw := kflate.NewStatelessWriter(c.nc)
	c.compressed = true
	c.setCodec(zr, zw)
	return nil
}
