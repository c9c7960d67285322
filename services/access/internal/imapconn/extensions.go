package imapconn

import "github.com/emersion/go-imap/v2"

// Extensions of RFC 3502 (MULTIAPPEND), RFC 8474 (OBJECTID), RFC 8514
// (SAVEDATE) and RFC 8970 (PREVIEW), announced after login when the
// sessions back them (Options.Caps).
const (
	CapMultiAppend imap.Cap = "MULTIAPPEND"
	CapObjectID    imap.Cap = "OBJECTID"
	CapSaveDate    imap.Cap = "SAVEDATE"
	CapPreview     imap.Cap = "PREVIEW"
)

var extensionCaps = []imap.Cap{CapMultiAppend, CapObjectID, CapSaveDate, CapPreview}

// extensionCaps lists the extensions of this file the server announces.
func (c *Conn) extensionCaps() []imap.Cap {
	var out []imap.Cap
	for _, cp := range extensionCaps {
		if c.srv.opts.Caps.Has(cp) {
			out = append(out, cp)
		}
	}
	return out
}
