package loadgen

import (
	"math"
	"slices"
)

// Number is what Percentile and Median take: durations, counts, rates.
type Number interface {
	~int | ~int64 | ~float64
}

// Percentile returns the nearest-rank p-th percentile of xs (p in
// 0..100): the smallest x such that at least p % of xs are ≤ x, i.e. the
// ⌈p/100·n⌉-th smallest; p ≤ 0 gives the minimum, p ≥ 100 the maximum, an
// empty xs zero. xs is not modified.
func Percentile[T Number](xs []T, p float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return rank(s, p)
}

// rank is Percentile on sorted s.
func rank[T Number](s []T, p float64) T {
	n := len(s)
	r := int(math.Ceil(p / 100 * float64(n)))
	// p/100·n can land a hair above an integer (0.07·100 = 7.000000000000001).
	if exact := math.Round(p / 100 * float64(n)); math.Abs(p/100*float64(n)-exact) < 1e-9 {
		r = int(exact)
	}
	return s[min(max(r, 1), n)-1]
}

// Median returns the middle value of xs, the mean of the two middle ones
// for an even count (rounded down for integer types), zero for an
// empty xs. xs is not modified.
func Median[T Number](xs []T) T {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}
