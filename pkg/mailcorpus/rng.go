package mailcorpus

import "math"

// rng is splitmix64: tiny, fast, and written out here so that a seed gives
// the same corpus on every Go version (math/rand/v2 keeps its generators
// stable but not the helpers that draw ranges from them).
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return scramble(r.s)
}

func scramble(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// mix derives an independent stream key from a key and an index.
func mix(key, i uint64) uint64 {
	return scramble(key ^ scramble(i+0x9e3779b97f4a7c15))
}

// intn returns a number in [0, n); n must be in (0, 2^32).
func (r *rng) intn(n int) int {
	return int((r.next() >> 32) * uint64(n) >> 32)
}

// between returns a number in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// permille reports true p times in 1000.
func (r *rng) permille(p int) bool { return r.intn(1000) < p }

// logUniform returns a number in [lo, hi) whose logarithm is uniform, so
// sizes spread evenly over orders of magnitude.
func (r *rng) logUniform(lo, hi int) int {
	f := float64(r.next()>>11) / (1 << 53)
	return int(float64(lo) * math.Exp(f*math.Log(float64(hi)/float64(lo))))
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }
