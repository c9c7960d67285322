package dnsresolver

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

type cacheKey struct {
	name  string // lower case, fully qualified
	qtype uint16
}

// entry is one cached answer: the records of the asked type, or none for a
// negative answer.
type entry struct {
	rrs    []dns.RR
	server string
}

func (e *entry) result(name string) ([]dns.RR, error) {
	if len(e.rrs) == 0 {
		return nil, notFound(name, e.server)
	}
	return e.rrs, nil
}

// cache is an LRU of answers, each until its expiry.
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; values are *item
	items map[cacheKey]*list.Element
}

type item struct {
	key     cacheKey
	e       *entry
	expires time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *cache) get(k cacheKey, now time.Time) (*entry, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	it := el.Value.(*item)
	if !now.Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it.e, true
}

func (c *cache) put(k cacheKey, e *entry, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = &item{k, e, expires}
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&item{k, e, expires})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*item).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
