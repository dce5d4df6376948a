package appservice

import (
	"errors"
	"regexp/syntax"
	"unicode"
)

// Overlaps reports whether some string is matched by both regular
// expressions, each with the spec's unanchored semantics (a match
// anywhere in the string). Two appservices whose exclusive namespaces
// overlap could both claim a user, so registration refuses that.
//
// It runs both compiled programs in lockstep over every possible input
// (a breadth-first search of their product automaton), so it decides
// exactly for ordinary expressions. Word boundaries (\b, \B) and
// line anchors are treated as always satisfiable, which can only report
// an overlap that does not exist: when unsure, refuse.
func Overlaps(a, b string) (bool, error) {
	pa, err := unanchoredProg(a)
	if err != nil {
		return false, err
	}
	pb, err := unanchoredProg(b)
	if err != nil {
		return false, err
	}
	type state struct {
		a, b  uint32
		start bool // nothing consumed yet (\A, ^ hold only there)
	}
	const maxStates = 200000
	seen := map[state]bool{}
	queue := []state{{uint32(pa.Start), uint32(pb.Start), true}}
	seen[queue[0]] = true
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		// Both programs may stop here: the input can end now.
		if closureMatches(pa, s.a, s.start) && closureMatches(pb, s.b, s.start) {
			return true, nil
		}
		ra, rb := runeInsts(pa, s.a, s.start), runeInsts(pb, s.b, s.start)
		for _, ia := range ra {
			for _, ib := range rb {
				if !intersect(runeSet(&pa.Inst[ia]), runeSet(&pb.Inst[ib])) {
					continue
				}
				next := state{pa.Inst[ia].Out, pb.Inst[ib].Out, false}
				if !seen[next] {
					if len(seen) >= maxStates {
						return true, errors.New("namespace regexes too complex to compare")
					}
					seen[next] = true
					queue = append(queue, next)
				}
			}
		}
	}
	return false, nil
}

// unanchoredProg compiles expr as a search: any text may come before and
// after a match.
func unanchoredProg(expr string) (*syntax.Prog, error) {
	re, err := syntax.Parse(`(?s:.*)(?:`+expr+`)(?s:.*)`, syntax.Perl)
	if err != nil {
		// Report the error against the expression as written.
		if _, perr := syntax.Parse(expr, syntax.Perl); perr != nil {
			return nil, perr
		}
		return nil, err
	}
	return syntax.Compile(re.Simplify())
}

// walkClosure visits the instructions reachable from pc without
// consuming input. atEnd lets \z and $ pass (the input ends here).
func walkClosure(p *syntax.Prog, pc uint32, start, atEnd bool, visit func(uint32)) {
	seen := map[uint32]bool{}
	var walk func(uint32)
	walk = func(pc uint32) {
		if seen[pc] {
			return
		}
		seen[pc] = true
		in := &p.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			walk(in.Out)
			walk(in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			walk(in.Out)
		case syntax.InstEmptyWidth:
			ew := syntax.EmptyOp(in.Arg)
			if ew&syntax.EmptyBeginText != 0 && !start {
				return
			}
			// (?m)$ may also hold before a newline: only \z needs the end.
			if ew&syntax.EmptyEndText != 0 && !atEnd {
				return
			}
			walk(in.Out)
		default:
			visit(pc)
		}
	}
	walk(pc)
}

func closureMatches(p *syntax.Prog, pc uint32, start bool) bool {
	found := false
	walkClosure(p, pc, start, true, func(pc uint32) {
		if p.Inst[pc].Op == syntax.InstMatch {
			found = true
		}
	})
	return found
}

func runeInsts(p *syntax.Prog, pc uint32, start bool) []uint32 {
	var out []uint32
	walkClosure(p, pc, start, false, func(pc uint32) {
		switch p.Inst[pc].Op {
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			out = append(out, pc)
		}
	})
	return out
}

// runeSet is the set of runes an instruction consumes, as sorted,
// inclusive [lo, hi] pairs.
func runeSet(in *syntax.Inst) []rune {
	switch in.Op {
	case syntax.InstRuneAny:
		return []rune{0, unicode.MaxRune}
	case syntax.InstRuneAnyNotNL:
		return []rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}
	case syntax.InstRune1:
		return []rune{in.Rune[0], in.Rune[0]}
	}
	pairs := in.Rune
	if len(pairs) == 1 {
		pairs = []rune{pairs[0], pairs[0]}
	}
	if syntax.Flags(in.Arg)&syntax.FoldCase == 0 {
		return pairs
	}
	// Case folding: add every rune's other cases, unless the ranges are
	// too large to enumerate, when any rune is assumed (which can only
	// make Overlaps more cautious).
	var out []rune
	n := 0
	for i := 0; i+1 < len(pairs); i += 2 {
		n += int(pairs[i+1]-pairs[i]) + 1
	}
	if n > 1024 {
		return []rune{0, unicode.MaxRune}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		for r := pairs[i]; r <= pairs[i+1]; r++ {
			out = append(out, r, r)
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				out = append(out, f, f)
			}
		}
	}
	return out
}

// intersect reports whether two range lists share a rune. The lists are
// short (a character class), so pairwise comparison is enough.
func intersect(a, b []rune) bool {
	for i := 0; i+1 < len(a); i += 2 {
		for j := 0; j+1 < len(b); j += 2 {
			if a[i] <= b[j+1] && b[j] <= a[i+1] {
				return true
			}
		}
	}
	return false
}
