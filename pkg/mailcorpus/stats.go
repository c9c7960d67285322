package mailcorpus

import (
	"fmt"
	"slices"
	"strings"
)

// Stats summarises the first messages of a corpus, for a test or benchmark
// to print what it ran on.
type Stats struct {
	Messages       int
	ByKind         map[Kind]int
	Broken         int
	TotalBytes     int64
	MeanSize       int64
	MedianSize     int64
	P99Size        int64
	MaxSize        int64
	MeanRecipients float64
	MaxRecipients  int
}

// Stats summarises messages 0 to n-1. Like Size, it makes text but no
// attachment bytes.
func (g *Generator) Stats(n int) Stats {
	st := Stats{Messages: n, ByKind: map[Kind]int{}}
	if n <= 0 {
		return st
	}
	c := getCtx()
	defer putCtx(c)
	sizes := make([]int64, n)
	rcpts := 0
	for i := range n {
		k := g.Kind(i)
		st.ByKind[k]++
		if k.Broken() {
			st.Broken++
		}
		_, size, rc := g.plan(c, i)
		sizes[i] = size
		st.TotalBytes += size
		rcpts += rc
		st.MaxRecipients = max(st.MaxRecipients, rc)
	}
	slices.Sort(sizes)
	st.MeanSize = st.TotalBytes / int64(n)
	st.MedianSize = sizes[n/2]
	st.P99Size = sizes[n*99/100]
	st.MaxSize = sizes[n-1]
	st.MeanRecipients = float64(rcpts) / float64(n)
	return st
}

// String is one line: sizes, recipients, then messages by kind.
func (st Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages, %s: mean %s, median %s, p99 %s, max %s; recipients mean %.1f, max %d; %d broken;",
		st.Messages, human(st.TotalBytes), human(st.MeanSize), human(st.MedianSize), human(st.P99Size), human(st.MaxSize),
		st.MeanRecipients, st.MaxRecipients, st.Broken)
	for _, k := range Kinds() {
		if n := st.ByKind[k]; n > 0 {
			fmt.Fprintf(&b, " %s %d", k, n)
		}
	}
	return b.String()
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
