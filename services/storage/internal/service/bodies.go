package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// upload is a body written to the body store, not yet referenced.
type upload struct {
	key        string
	size       uint64
	crlfSize   uint64 // size with bare LFs counted as CRLF
	headerSize uint64
}

var errTooLarge = errors.New("message too large")

// receiveBody streams the chunks that next returns (until io.EOF) into a new
// body object and summarizes it on the way (summary.go). Memory stays bounded by the
// chunk size, the header capture and the driver's part size.
func (s *Server) receiveBody(ctx context.Context, next func() ([]byte, error)) (*upload, error) {
	key, err := s.uploadKeys.next(ctx)
	if err != nil {
		drain(next)
		return nil, toStatus(err)
	}
	return s.receiveBodyAs(ctx, key, next)
}

// drain reads next to its end (or first error), so that a stream's body is
// consumed even when it will not be stored.
func drain(next func() ([]byte, error)) {
	for {
		if _, err := next(); err != nil {
			return
		}
	}
}

// receiveBodyAs is receiveBody for a key whose upload intent is registered.
// The body streams into the body store and, at the same time, through the
// MIME parser that makes its summary (summary.go), stored before the upload
// counts as done.
func (s *Server) receiveBodyAs(ctx context.Context, key string, next func() ([]byte, error)) (*upload, error) {
	pr, pw := io.Pipe()
	sumR, sumW := io.Pipe()
	var sum *records.Summary
	var headerSize int
	var sumErr error
	summarized := make(chan struct{})
	go func() {
		defer close(summarized)
		sum, headerSize, sumErr = summarize(sumR)
		sumR.CloseWithError(errors.New("summary finished")) // the writer must never block on it
	}()
	var total, bareLF int64
	prevCR := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			data, err := next()
			if err == io.EOF {
				pw.Close()
				sumW.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				sumW.CloseWithError(err)
				return
			}
			total += int64(len(data))
			if total > s.cfg.MaxMessageSize {
				pw.CloseWithError(errTooLarge)
				sumW.CloseWithError(errTooLarge)
				return
			}
			bareLF += countBareLF(data, prevCR)
			if len(data) > 0 {
				prevCR = data[len(data)-1] == '\r'
			}
			sumW.Write(data) // a parser that stopped early is told by sumErr
			if _, err := pw.Write(data); err != nil {
				sumW.CloseWithError(err)
				return // the reader side failed; Put reports why
			}
		}
	}()
	// The summary goes with the body when the driver can keep it there (one
	// request instead of two). Otherwise it is stored as an object of its
	// own: while the body's PUT is still on its way for a driver that never
	// attaches, after it for a body that turned out too large to. Both must
	// be durable before the upload counts as done. A summary stored for a
	// body that then fails goes with it (discardBody).
	var encoded []byte // the summary, marshalled once
	attach := func() []byte {
		<-summarized
		if sumErr != nil {
			return nil
		}
		encoded = marshal(sum)
		return encoded
	}
	if !s.blobs.Attaches() {
		attach = nil
	}
	var n int64
	var attached bool
	var err error
	stored := make(chan struct{})
	go func() {
		defer close(stored)
		n, attached, err = s.blobs.PutAttached(ctx, key, pr, attach)
		pr.CloseWithError(errors.New("upload finished")) // unblocks the reader goroutine
	}()
	<-summarized
	var summaryErr error
	if sumErr != nil {
		summaryErr = fmt.Errorf("summarize body: %w", sumErr)
	} else if attach == nil {
		summaryErr = s.putSummary(ctx, key, sum)
	}
	<-stored
	<-done
	if err == nil {
		err = summaryErr
	}
	if err == nil && attach != nil {
		if attached {
			s.summaries.add(key, encoded)
		} else {
			err = s.putSummary(ctx, key, sum)
		}
	}
	if err != nil {
		s.discardBody(key) // a partial object, if the driver left one
		if errors.Is(err, errTooLarge) {
			return nil, fail(reasonTooLarge, "message larger than %d bytes", s.cfg.MaxMessageSize)
		}
		if st := toStatus(err); ctx.Err() == nil {
			return nil, st
		}
		return nil, toStatus(ctx.Err())
	}
	return &upload{
		key:        key,
		size:       uint64(n),
		crlfSize:   uint64(n + bareLF),
		headerSize: uint64(headerSize),
	}, nil
}

// countBareLF counts the LFs in data not preceded by CR (prevCR: the byte
// before data was a CR).
func countBareLF(data []byte, prevCR bool) int64 {
	n := int64(bytes.Count(data, []byte("\n")) - bytes.Count(data, []byte("\r\n")))
	if prevCR && len(data) > 0 && data[0] == '\n' {
		n--
	}
	return n
}

// discardBody deletes a body whose transaction definitely did not commit,
// then its upload intent. If this fails, the orphan scan removes it later.
func (s *Server) discardBody(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.deleteBlobs(ctx, key); err != nil {
		s.log.Warn("could not delete unreferenced body; the sweeper will", "body", key, "err", err)
	}
	s.forgetUpload(key)
}

// streamBody sends a body range to send in chunks of 64 KiB.
func (s *Server) streamBody(ctx context.Context, key string, offset, length uint64, send func([]byte) error) error {
	rc, err := s.blobs.Get(ctx, key, int64(offset), int64(length))
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if serr := send(buf[:n]); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// deleteBlobs deletes a body and its summary. The summary goes last: a crash
// in between leaves only a summary, which the orphan scan removes.
func (s *Server) deleteBlobs(ctx context.Context, bodyKey string) error {
	if err := s.blobs.Delete(ctx, bodyKey); err != nil {
		return err
	}
	return s.blobs.Delete(ctx, summaryKey(bodyKey))
}
