package regroup

import "math/bits"

// Adjacency is a symmetric connectivity matrix: Adjacency[i] is the set of
// nodes that node i hears and that hear i. Index 0 is unused.
type Adjacency [65]NodeSet

// Matrix builds the symmetric adjacency of the candidates from rows:
// rows[i] is what node i hears. An edge needs both directions.
func Matrix(candidates NodeSet, rows *[65]NodeSet) Adjacency {
	var a Adjacency
	for _, i := range candidates.IDs() {
		for _, j := range (rows[i] & candidates).IDs() {
			if j != i && rows[j].Has(i) {
				a[i] = a[i].Add(j)
			}
		}
	}
	return a
}

// maxCliqueBudget bounds the search; the simulator's graphs are far from it.
const maxCliqueBudget = 200000

// MaxClique returns the largest fully connected set of candidates that
// contains must, preferring, among sets of equal size, the one whose sorted
// id list is smallest. It is deterministic: Bron–Kerbosch with pivoting
// over bit sets, vertices taken in id order.
// Reference: docs/membership.md "Regroup" (stage 3, Pruning); MSCS paper
// (Vogels et al.), section "Regroup".
func MaxClique(a *Adjacency, candidates NodeSet, must NodeID) NodeSet {
	if !candidates.Has(must) {
		return 0
	}
	s := cliqueSearch{a: a, best: NodeSet(0).Add(must), budget: maxCliqueBudget}
	s.bk(NodeSet(0).Add(must), a[must]&candidates, 0)
	return s.best
}

type cliqueSearch struct {
	a      *Adjacency
	best   NodeSet
	budget int
}

func better(x, y NodeSet) bool {
	if x.Len() != y.Len() {
		return x.Len() > y.Len()
	}
	d := x ^ y
	return d != 0 && x.Has(d.Min())
}

func (s *cliqueSearch) bk(r, p, x NodeSet) {
	if s.budget--; s.budget < 0 {
		return
	}
	if p == 0 {
		if x == 0 && better(r, s.best) {
			s.best = r
		}
		return
	}
	if r.Len()+p.Len() < s.best.Len() {
		return
	}
	// Pivot: the vertex of P ∪ X with most neighbours in P.
	var pivot NodeID
	most := -1
	for v := uint64(p | x); v != 0; v &= v - 1 {
		u := NodeID(bits.TrailingZeros64(v) + 1)
		if n := (s.a[u] & p).Len(); n > most {
			most, pivot = n, u
		}
	}
	for v := uint64(p &^ s.a[pivot]); v != 0; v &= v - 1 {
		u := NodeID(bits.TrailingZeros64(v) + 1)
		s.bk(r.Add(u), p&s.a[u], x&s.a[u])
		p = p.Remove(u)
		x = x.Add(u)
	}
}
