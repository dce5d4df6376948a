package directory

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// Entry is what a policy decision needs about one practitioner. It is a small
// value; ProfessionCodes is shared between entries and must not be modified.
type Entry struct {
	IDNat           string
	Active          bool
	ProfessionCodes []string
	DisplayName     string
}

// HasProfession reports whether code (TRE_G15, e.g. "10") is among the
// entry's professions.
func (e Entry) HasProfession(code string) bool {
	return slices.Contains(e.ProfessionCodes, code)
}

// Index is an immutable snapshot of the directory, safe for concurrent reads.
type Index struct {
	byID    map[string]uint32
	entries []Entry
	// search holds, per entry, its folded name and profession tokens, each
	// preceded by a space, so " "+token is a prefix test by substring.
	search []string
	names  []string // folded "first last", for exact-match ranking
	lasts  []string // folded last name
	tokens []string // sorted distinct tokens
	posts  [][]uint32
}

// Len is the number of practitioners indexed.
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.entries)
}

// Lookup finds a practitioner by idNat. A nil index finds nothing, so a hub
// started before its first import denies instead of crashing.
func (ix *Index) Lookup(idNat string) (Entry, bool) {
	if ix == nil {
		return Entry{}, false
	}
	i, ok := ix.byID[idNat]
	if !ok {
		return Entry{}, false
	}
	return ix.entries[i], true
}

// Search finds active practitioners whose name, profession label or city words
// start with every word of query (accents and case ignored). Ranking: exact
// full name or last name first, then queries whose words all match whole
// words, then prefix matches; ties by display name then idNat. Inactive
// practitioners are left out: search is for finding someone to talk to.
func (ix *Index) Search(query string, limit int) []Entry {
	if ix == nil || limit <= 0 {
		return nil
	}
	q := fold(query)
	if q == "" {
		return nil
	}
	qt := strings.Fields(q)

	// Drive from the query word with the fewest candidates, then check the
	// others against each candidate's token string.
	best, bestN := -1, 0
	ranges := make([][2]int, len(qt))
	for i, t := range qt {
		lo := sort.SearchStrings(ix.tokens, t)
		hi := lo
		n := 0
		for hi < len(ix.tokens) && strings.HasPrefix(ix.tokens[hi], t) {
			n += len(ix.posts[hi])
			hi++
		}
		if n == 0 {
			return nil
		}
		ranges[i] = [2]int{lo, hi}
		if best < 0 || n < bestN {
			best, bestN = i, n
		}
	}
	var cands []uint32
	r := ranges[best]
	for t := r[0]; t < r[1]; t++ {
		cands = append(cands, ix.posts[t]...)
	}
	if r[1]-r[0] > 1 {
		// One entry can hold several tokens of the range ("marie martin"
		// for "mar").
		slices.Sort(cands)
		cands = slices.Compact(cands)
	}

	type hit struct {
		rank int
		i    uint32
	}
	var hits []hit
	for _, c := range cands {
		if !ix.entries[c].Active {
			continue
		}
		s := ix.search[c]
		rank, ok := 0, true
		whole := true
		for _, t := range qt {
			if !strings.Contains(s, " "+t) {
				ok = false
				break
			}
			if !strings.Contains(s+" ", " "+t+" ") {
				whole = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case q == ix.names[c] || q == ix.lasts[c] || q == reverseName(ix.names[c], ix.lasts[c]):
			rank = 0
		case whole:
			rank = 1
		default:
			rank = 2
		}
		hits = append(hits, hit{rank, c})
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		ea, eb := &ix.entries[a.i], &ix.entries[b.i]
		if c := strings.Compare(ea.DisplayName, eb.DisplayName); c != 0 {
			return c
		}
		return strings.Compare(ea.IDNat, eb.IDNat)
	})
	if len(hits) > limit {
		hits = hits[:limit]
	}
	out := make([]Entry, len(hits))
	for i, h := range hits {
		out[i] = ix.entries[h.i]
	}
	return out
}

// reverseName turns folded "first last" into "last first", for users who type
// the surname first.
func reverseName(name, last string) string {
	first := strings.TrimSpace(strings.TrimSuffix(name, last))
	if first == "" {
		return name
	}
	return last + " " + first
}

// IndexBuilder collects practitioners for one Index. It is not safe for
// concurrent use.
type IndexBuilder struct {
	ix    *Index
	codes map[string][]string // interned profession code lists
}

// NewIndexBuilder starts an empty index.
func NewIndexBuilder() *IndexBuilder {
	return &IndexBuilder{
		ix:    &Index{byID: make(map[string]uint32)},
		codes: make(map[string][]string),
	}
}

// Add indexes p. A practitioner without an idNat is ignored; adding the same
// idNat twice keeps the last one, so an importer can apply corrections after
// the bulk load.
func (b *IndexBuilder) Add(p Practitioner) {
	if p.IDNat == "" {
		return
	}
	k := p.IDNat
	codes := make([]string, 0, len(p.Professions))
	for _, pr := range p.Professions {
		codes = append(codes, pr.Code)
	}
	joined := strings.Join(codes, ",")
	if shared, ok := b.codes[joined]; ok {
		codes = shared
	} else {
		b.codes[joined] = codes
	}
	e := Entry{IDNat: p.IDNat, Active: p.Active, ProfessionCodes: codes, DisplayName: p.DisplayName()}

	first, last := fold(p.FirstName), fold(p.LastName)
	name := strings.TrimSpace(first + " " + last)
	var sb strings.Builder
	for _, part := range []string{first, last} {
		for _, t := range strings.Fields(part) {
			sb.WriteByte(' ')
			sb.WriteString(t)
		}
	}
	for _, pr := range p.Professions {
		for _, t := range strings.Fields(fold(pr.Label)) {
			sb.WriteByte(' ')
			sb.WriteString(t)
		}
	}
	// Cities: "cardiologue Lyon" is how colleagues look for each other.
	for _, a := range p.Activities {
		for _, t := range strings.Fields(fold(a.City)) {
			sb.WriteByte(' ')
			sb.WriteString(t)
		}
	}

	ix := b.ix
	if i, dup := ix.byID[k]; dup {
		ix.entries[i] = e
		ix.search[i] = sb.String()
		ix.names[i] = name
		ix.lasts[i] = last
		return
	}
	ix.byID[k] = uint32(len(ix.entries))
	ix.entries = append(ix.entries, e)
	ix.search = append(ix.search, sb.String())
	ix.names = append(ix.names, name)
	ix.lasts = append(ix.lasts, last)
}

// Build finishes the index. The builder is reset and may be reused.
func (b *IndexBuilder) Build() *Index {
	ix := b.ix
	post := make(map[string][]uint32)
	for i, s := range ix.search {
		for _, t := range strings.Fields(s) {
			p := post[t]
			// A token repeated in one entry ("marie marie") is posted once.
			if n := len(p); n > 0 && p[n-1] == uint32(i) {
				continue
			}
			post[t] = append(p, uint32(i))
		}
	}
	ix.tokens = make([]string, 0, len(post))
	for t := range post {
		ix.tokens = append(ix.tokens, t)
	}
	slices.Sort(ix.tokens)
	ix.posts = make([][]uint32, len(ix.tokens))
	for i, t := range ix.tokens {
		ix.posts[i] = post[t]
	}
	*b = *NewIndexBuilder()
	return ix
}

// Atomic holds the current Index. Readers get the old or the new snapshot,
// never a mix, and never block the import that prepares the next one.
type Atomic struct {
	p atomic.Pointer[Index]
}

// Load returns the current index, nil before the first Swap (a nil *Index
// answers every query with "not found").
func (a *Atomic) Load() *Index { return a.p.Load() }

// Swap publishes ix and returns the index it replaces.
func (a *Atomic) Swap(ix *Index) *Index { return a.p.Swap(ix) }
