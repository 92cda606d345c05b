package tmsclient

import (
	"cmp"
	"slices"
	"strconv"
	"sync"
)

// Range is an inclusive range of sequence numbers.
type Range struct{ From, To uint64 }

func (r Range) String() string {
	if r.From == r.To {
		return strconv.FormatUint(r.From, 10)
	}
	return strconv.FormatUint(r.From, 10) + ".." + strconv.FormatUint(r.To, 10)
}

// Observation is what one record told the SeqChecker.
type Observation struct {
	// First is set for the first record of its stream. Missing is then 1..seq-1, which for a
	// watcher that joined late is history, not loss.
	First bool
	// Duplicate is set when this seq was seen before.
	Duplicate bool
	// Late is set when this seq fills a hole reported earlier (an out-of-order delivery).
	Late bool
	// Missing is the hole this record opened above the previous highest seq, if any.
	Missing *Range
	// Invalid is set for seq 0, which the contract never uses (seqs start at 1).
	Invalid bool
}

// StreamReport is the state of one (device, stream).
type StreamReport struct {
	Device, Stream string
	Highest        uint64  // highest seq seen
	Received       uint64  // distinct seqs seen
	Duplicates     uint64  // records whose seq was already seen
	Invalid        uint64  // records with seq 0
	Gaps           []Range // seqs in 1..Highest not seen
}

// SeqChecker tracks the seqs seen per (device, stream) to prove that nothing was lost and to
// count what was delivered more than once. Seen seqs are kept as merged ranges, so a stream
// delivered in order costs one range however long it is. Safe for concurrent use.
type SeqChecker struct {
	mu      sync.Mutex
	streams map[streamKey]*seqState
}

type streamKey struct{ device, stream string }

type seqState struct {
	seen       []Range // sorted, disjoint, not adjacent
	duplicates uint64
	invalid    uint64
	received   uint64
}

// NewSeqChecker returns an empty checker.
func NewSeqChecker() *SeqChecker {
	return &SeqChecker{streams: make(map[streamKey]*seqState)}
}

// Observe records one received seq.
func (c *SeqChecker) Observe(device, stream string, seq uint64) Observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := streamKey{device, stream}
	st := c.streams[k]
	if st == nil {
		st = &seqState{}
		c.streams[k] = st
	}
	if seq == 0 {
		st.invalid++
		return Observation{Invalid: true}
	}
	var obs Observation
	obs.First = st.received == 0
	highest := st.highest()
	switch {
	case seq > highest && seq-highest > 1:
		obs.Missing = &Range{From: highest + 1, To: seq - 1}
	case seq <= highest && !st.contains(seq):
		obs.Late = true
	}
	if !st.insert(seq) {
		st.duplicates++
		return Observation{Duplicate: true}
	}
	st.received++
	return obs
}

func (st *seqState) highest() uint64 {
	if len(st.seen) == 0 {
		return 0
	}
	return st.seen[len(st.seen)-1].To
}

// search returns the index of the first range starting above seq.
func (st *seqState) search(seq uint64) int {
	i, _ := slices.BinarySearchFunc(st.seen, seq, func(r Range, s uint64) int {
		if r.From > s {
			return 1
		}
		return -1
	})
	return i
}

func (st *seqState) contains(seq uint64) bool {
	i := st.search(seq)
	return i > 0 && st.seen[i-1].To >= seq
}

// insert adds seq, merging neighbouring ranges; it reports false if seq was already there.
func (st *seqState) insert(seq uint64) bool {
	i := st.search(seq)
	if i > 0 && st.seen[i-1].To >= seq {
		return false
	}
	joinPrev := i > 0 && st.seen[i-1].To == seq-1
	joinNext := i < len(st.seen) && st.seen[i].From == seq+1
	switch {
	case joinPrev && joinNext:
		st.seen[i-1].To = st.seen[i].To
		st.seen = slices.Delete(st.seen, i, i+1)
	case joinPrev:
		st.seen[i-1].To = seq
	case joinNext:
		st.seen[i].From = seq
	default:
		st.seen = slices.Insert(st.seen, i, Range{From: seq, To: seq})
	}
	return true
}

func (st *seqState) gaps() []Range {
	var gaps []Range
	next := uint64(1)
	for _, r := range st.seen {
		if r.From > next {
			gaps = append(gaps, Range{From: next, To: r.From - 1})
		}
		next = r.To + 1
	}
	return gaps
}

// Report returns the state of one stream (zero counts if nothing was seen on it).
func (c *SeqChecker) Report(device, stream string) StreamReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := StreamReport{Device: device, Stream: stream}
	if st := c.streams[streamKey{device, stream}]; st != nil {
		rep.fill(st)
	}
	return rep
}

func (r *StreamReport) fill(st *seqState) {
	r.Highest = st.highest()
	r.Received = st.received
	r.Duplicates = st.duplicates
	r.Invalid = st.invalid
	r.Gaps = st.gaps()
}

// Reports returns every stream seen, ordered by device then stream.
func (c *SeqChecker) Reports() []StreamReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]StreamReport, 0, len(c.streams))
	for k, st := range c.streams {
		rep := StreamReport{Device: k.device, Stream: k.stream}
		rep.fill(st)
		out = append(out, rep)
	}
	slices.SortFunc(out, func(a, b StreamReport) int {
		return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.Stream, b.Stream))
	})
	return out
}

// Complete reports whether every seq in 1..upTo was seen on the stream.
func (c *SeqChecker) Complete(device, stream string, upTo uint64) bool {
	if upTo == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[streamKey{device, stream}]
	return st != nil && len(st.seen) > 0 && st.seen[0].From == 1 && st.seen[0].To >= upTo
}
