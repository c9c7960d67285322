package imapd

import (
	"math"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// bodyStructure turns a stored MIME tree into go-imap's BODYSTRUCTURE value (extended form).
//
// Every part gets its extension data and every multipart at least one
// child (an empty text/plain where none was found: a boundary never
// declared or never used), as RFC 9051's body-type-mpart requires and
// go-imap's writer assumes — it panics otherwise.
func bodyStructure(p *storagev1.BodyPart) imap.BodyStructure {
	if p == nil {
		return emptyTextPart()
	}
	if p.Type == "multipart" {
		mp := &imap.BodyStructureMultiPart{
			Subtype: p.Subtype,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      paramMap(p.Params),
				Disposition: disposition(p),
				Language:    p.Language,
				Location:    p.Location,
			},
		}
		for _, child := range p.Parts {
			mp.Children = append(mp.Children, bodyStructure(child))
		}
		if len(mp.Children) == 0 {
			mp.Children = []imap.BodyStructure{emptyTextPart()}
		}
		return mp
	}
	sp := &imap.BodyStructureSinglePart{
		Type:        p.Type,
		Subtype:     p.Subtype,
		Params:      paramMap(p.Params),
		ID:          p.Id,
		Description: p.Description,
		Encoding:    p.Encoding,
		Size:        uint32(min(p.Size, math.MaxUint32)),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(p),
			Language:    p.Language,
			Location:    p.Location,
		},
	}
	switch {
	case p.Type == "text":
		sp.Text = &imap.BodyStructureText{NumLines: int64(p.Lines)}
	case p.Type == "message" && len(p.Parts) == 1:
		// message/rfc822 and message/global: the parser gives them their
		// encapsulated message as the one child.
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      toIMAPEnvelope(p.Envelope),
			BodyStructure: bodyStructure(p.Parts[0]),
			NumLines:      int64(p.Lines),
		}
	}
	return sp
}

// emptyTextPart stands in for the parts of a multipart that has none.
func emptyTextPart() *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{
		Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
		Encoding: "7bit", Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
	}
}

func disposition(p *storagev1.BodyPart) *imap.BodyStructureDisposition {
	if p.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: p.Disposition, Params: paramMap(p.DispositionParams)}
}

// paramMap gives the parameters as go-imap wants them; it writes them
// sorted by name, and a name twice cannot be (the parser keeps the first).
func paramMap(params []*storagev1.BodyParam) map[string]string {
	if len(params) == 0 {
		return nil
	}
	m := make(map[string]string, len(params))
	for _, prm := range params {
		if _, dup := m[prm.Name]; !dup {
			m[prm.Name] = prm.Value
		}
	}
	return m
}
