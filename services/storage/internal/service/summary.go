package service

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/pkg/envelope"
	"github.com/mailfleet/mailfleet/pkg/mimetree"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// A body's summary (its envelope and MIME tree) never changes, so it is
// computed once, when the body is uploaded, and kept in the body store: with
// the body object itself when the driver can (S3 user metadata, written by
// the body's own PUT), else as an object of its own next to the body. etcd
// holds only the small mutable part of each message (entry.go), which is
// what bounds a cell. Copies share the summary as they
// share the body; the sweeper deletes both together. Reads go through a
// per-replica cache that never needs invalidating.

// summaryPrefix is where summaries live in the body store.
const summaryPrefix = "summaries/"

// summaryKey is the body store key of bodyKey's summary.
func summaryKey(bodyKey string) string { return summaryPrefix + bodyKey }

// headerCapture is how much of a body's start is kept in memory to parse the
// header; a header longer than this is indexed from its first part only.
const headerCapture = 256 << 10

// summaryFetchers bounds the summaries one listing fetches at once: enough to
// hide an object store's latency, few enough not to flood it.
const summaryFetchers = 16

// summarize reads a whole message and computes its summary and the length
// of its header section. The header is captured up to headerCapture bytes;
// a longer one is summarized from its first part, and one without an empty
// line is all header (as far as it was captured).
func summarize(r io.Reader) (sum *records.Summary, headerSize int, err error) {
	head := &capture{limit: headerCapture}
	tree, err := mimetree.Parse(io.TeeReader(r, head))
	if err != nil {
		return nil, 0, err
	}
	hs := envelope.HeaderSize(head.buf)
	if hs < 0 {
		hs = len(head.buf)
	}
	return &records.Summary{Envelope: envelope.Parse(head.buf[:hs]), Structure: tree}, hs, nil
}

// capture keeps the first limit bytes written to it.
type capture struct {
	buf   []byte
	limit int
}

func (c *capture) Write(p []byte) (int, error) {
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// putSummary stores sum for bodyKey and caches it.
func (s *Server) putSummary(ctx context.Context, bodyKey string, sum *records.Summary) error {
	b := marshal(sum)
	if _, err := s.blobs.Put(ctx, summaryKey(bodyKey), bytes.NewReader(b)); err != nil {
		return fmt.Errorf("store summary: %w", err)
	}
	s.summaries.add(bodyKey, b)
	return nil
}

// summary returns bodyKey's summary: from the cache, else from its object,
// else (a body stored before summaries existed, or whose summary was lost)
// computed from the body and stored for next time.
func (s *Server) summary(ctx context.Context, bodyKey string) (*records.Summary, error) {
	if b, ok := s.summaries.get(bodyKey); ok {
		return decodeSummary(bodyKey, b)
	}
	// Kept with the body (most bodies stored since summaries moved there),
	// else an object of its own (large bodies, and bodies stored before).
	// A failed HEAD is no answer: the object of its own may still be there.
	if b, _ := s.blobs.Attachment(ctx, bodyKey); b != nil {
		sum, err := decodeSummary(bodyKey, b)
		if err == nil {
			s.summaries.add(bodyKey, b)
		}
		return sum, err
	}
	rc, err := s.blobs.Get(ctx, summaryKey(bodyKey), 0, 0)
	if err == nil {
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		sum, err := decodeSummary(bodyKey, b)
		if err == nil {
			s.summaries.add(bodyKey, b)
		}
		return sum, err
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		return nil, err
	}
	body, err := s.blobs.Get(ctx, bodyKey, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("body %s: %w", bodyKey, err)
	}
	defer body.Close()
	sum, _, err := summarize(body)
	if err != nil {
		return nil, err
	}
	if err := s.putSummary(ctx, bodyKey, sum); err != nil {
		s.log.Warn("could not store a computed summary", "body", bodyKey, "err", err)
	}
	return sum, nil
}

func decodeSummary(bodyKey string, b []byte) (*records.Summary, error) {
	sum := &records.Summary{}
	if err := proto.Unmarshal(b, sum); err != nil {
		return nil, fmt.Errorf("summary of %s: %w", bodyKey, err)
	}
	return sum, nil
}

// fillSummaries sets the envelope and/or structure of msgs from their
// summaries, fetching them concurrently.
func (s *Server) fillSummaries(ctx context.Context, msgs []*storagev1.Message, withEnvelope, withStructure bool) error {
	if !withEnvelope && !withStructure {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	slots := make(chan struct{}, summaryFetchers)
	for _, m := range msgs {
		if withEnvelope && m.Envelope != nil && !withStructure {
			continue // a version 1 entry carries its envelope
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			sum, err := s.summary(ctx, m.BodyKey)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
				return
			}
			if withEnvelope && m.Envelope == nil {
				m.Envelope = sum.Envelope
			}
			if withStructure {
				m.Structure = sum.Structure
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// summaryCache is an LRU cache of encoded summaries: kept encoded, so that
// the bound is the memory it takes (decoding one costs microseconds).
type summaryCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	order    *list.List // front: most recently used
	byKey    map[string]*list.Element
}

type cachedSummary struct {
	key     string
	encoded []byte
}

func newSummaryCache(maxBytes int) *summaryCache {
	return &summaryCache{maxBytes: maxBytes, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *summaryCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cachedSummary).encoded, true
	}
	return nil, false
}

// add caches an encoded summary; the caller must not change it afterwards.
func (c *summaryCache) add(key string, encoded []byte) {
	size := len(key) + len(encoded)
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = c.order.PushFront(&cachedSummary{key: key, encoded: encoded})
	c.bytes += size
	for c.bytes > c.maxBytes {
		last := c.order.Back()
		old := last.Value.(*cachedSummary)
		c.order.Remove(last)
		delete(c.byKey, old.key)
		c.bytes -= len(old.key) + len(old.encoded)
	}
}
