package tmsclient

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestSeqChecker(t *testing.T) {
	c := NewSeqChecker()
	obs := func(seq uint64) Observation { return c.Observe("A", "ack", seq) }

	if o := obs(1); !o.First || o.Missing != nil || o.Duplicate {
		t.Errorf("seq 1: %+v", o)
	}
	obs(2)
	if o := obs(5); o.Missing == nil || *o.Missing != (Range{3, 4}) {
		t.Errorf("seq 5: %+v, want 3..4 missing", o)
	}
	if o := obs(2); !o.Duplicate {
		t.Errorf("seq 2 again: %+v", o)
	}
	if o := obs(4); !o.Late || o.Missing != nil {
		t.Errorf("seq 4 late: %+v", o)
	}
	obs(9)
	if o := obs(0); !o.Invalid {
		t.Errorf("seq 0: %+v", o)
	}
	rep := c.Report("A", "ack")
	want := StreamReport{Device: "A", Stream: "ack", Highest: 9, Received: 5, Duplicates: 1, Invalid: 1,
		Gaps: []Range{{3, 3}, {6, 8}}}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Errorf("report %+v\nwant   %+v", rep, want)
	}
	if !c.Complete("A", "ack", 2) || c.Complete("A", "ack", 3) || !c.Complete("A", "ack", 0) {
		t.Error("Complete wrong around the first gap")
	}
	obs(3)
	for s := uint64(6); s <= 8; s++ {
		obs(s)
	}
	if !c.Complete("A", "ack", 9) || c.Complete("A", "ack", 10) {
		t.Error("Complete wrong after filling the gaps")
	}
	if rep := c.Report("A", "ack"); len(rep.Gaps) != 0 || rep.Received != 9 {
		t.Errorf("after filling: %+v", rep)
	}
	// A watcher that starts late sees history as missing, flagged as First.
	if o := c.Observe("B", "stats", 100); !o.First || *o.Missing != (Range{1, 99}) {
		t.Errorf("late start: %+v", o)
	}
	if c.Complete("nobody", "x", 1) {
		t.Error("Complete on an unknown stream")
	}
	if got := c.Reports(); len(got) != 2 || got[0].Device != "A" || got[1].Device != "B" {
		t.Errorf("Reports: %+v", got)
	}
}

// Records delivered out of order and more than once from many goroutines still add up.
func TestSeqCheckerConcurrent(t *testing.T) {
	c := NewSeqChecker()
	const n = 2000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := uint64(n); i >= 1; i-- {
				if i%4 == uint64(w) || i%10 == 0 {
					c.Observe("D", "log/pos", i)
				}
			}
		})
	}
	wg.Wait()
	rep := c.Report("D", "log/pos")
	if !c.Complete("D", "log/pos", n) || rep.Received != n || len(rep.Gaps) != 0 {
		t.Errorf("report %+v", rep)
	}
	// Seqs divisible by 10 arrived from every worker: three extra copies each.
	if rep.Duplicates != 3*n/10 {
		t.Errorf("%d duplicates, want %d", rep.Duplicates, 3*n/10)
	}
}

func TestSeqCheckerExtremes(t *testing.T) {
	c := NewSeqChecker()
	const top = ^uint64(0)
	c.Observe("A", "s", top)
	if o := c.Observe("A", "s", top); !o.Duplicate {
		t.Errorf("max seq twice: %+v", o)
	}
	c.Observe("A", "s", top-1)
	if rep := c.Report("A", "s"); !slices.Equal(rep.Gaps, []Range{{1, top - 2}}) || rep.Highest != top {
		t.Errorf("report %+v", rep)
	}
}

func BenchmarkSeqCheckerInOrder(b *testing.B) {
	c := NewSeqChecker()
	for i := range b.N {
		c.Observe("D", "stats", uint64(i)+1)
	}
}
