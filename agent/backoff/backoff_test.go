package backoff

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestCeilingDoublesUpToCap(t *testing.T) {
	p := Policy{Base: 2 * time.Second, Cap: 5 * time.Minute}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for attempt, w := range want {
		if got := p.Ceiling(attempt); got != w {
			t.Errorf("Ceiling(%d) = %v, want %v", attempt, got, w)
		}
	}
}

func TestCeilingNeverOverflows(t *testing.T) {
	policies := []Policy{
		{Base: time.Second, Cap: time.Hour},
		{Base: time.Second},               // no cap: bounded by the largest Duration
		{Base: math.MaxInt64 / 3, Cap: 0}, // one doubling from the edge
		{Base: time.Nanosecond, Cap: math.MaxInt64},
	}
	for _, p := range policies {
		prev := time.Duration(0)
		for _, attempt := range []int{0, 1, 2, 30, 31, 32, 33, 61, 62, 63, 64, 65, 100, 1000, math.MaxInt32, math.MaxInt} {
			c := p.Ceiling(attempt)
			if c <= 0 {
				t.Fatalf("%+v: Ceiling(%d) = %v, want > 0", p, attempt, c)
			}
			if c < prev {
				t.Fatalf("%+v: Ceiling(%d) = %v went down from %v", p, attempt, c, prev)
			}
			if p.Cap > 0 && c > p.Cap {
				t.Fatalf("%+v: Ceiling(%d) = %v above cap", p, attempt, c)
			}
			prev = c
		}
		if p.Cap > 0 && prev != p.Cap {
			t.Errorf("%+v: high attempts reach %v, want the cap", p, prev)
		}
		if p.Cap <= 0 && prev != math.MaxInt64 {
			t.Errorf("%+v: high attempts reach %v, want MaxInt64", p, prev)
		}
	}
}

func TestCeilingEdgeCases(t *testing.T) {
	if got := (Policy{}).Ceiling(5); got != 0 {
		t.Errorf("zero policy: Ceiling = %v, want 0", got)
	}
	if got := (Policy{Base: time.Minute, Cap: time.Second}).Ceiling(0); got != time.Second {
		t.Errorf("base above cap: Ceiling(0) = %v, want the cap", got)
	}
	if got := (Policy{Base: time.Second, Cap: time.Minute}).Ceiling(-3); got != time.Second {
		t.Errorf("negative attempt: Ceiling = %v, want base", got)
	}
}

func TestDelayWithinBoundsAndSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := Policy{Base: 100 * time.Millisecond, Cap: 10 * time.Second}
	for attempt := range 12 {
		c := p.Ceiling(attempt)
		var lowHalf, highHalf int
		minSeen, maxSeen := time.Duration(math.MaxInt64), time.Duration(0)
		const n = 4000
		for range n {
			d := p.Delay(attempt, r)
			if d < 0 || d > c {
				t.Fatalf("Delay(%d) = %v outside [0, %v]", attempt, d, c)
			}
			if d < c/2 {
				lowHalf++
			} else {
				highHalf++
			}
			minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
		}
		// Full jitter is uniform over the window: both halves get about half the draws, and the
		// draws reach close to both ends. These bounds fail with negligible probability.
		if lowHalf < n*4/10 || highHalf < n*4/10 {
			t.Errorf("attempt %d: halves %d/%d, not uniform", attempt, lowHalf, highHalf)
		}
		if minSeen > c/50 || maxSeen < c-c/50 {
			t.Errorf("attempt %d: draws span [%v, %v] of [0, %v]", attempt, minSeen, maxSeen, c)
		}
	}
}

func TestDelayDeterministicWithSeed(t *testing.T) {
	p := Policy{Base: time.Second, Cap: time.Minute}
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	for attempt := range 20 {
		if da, db := p.Delay(attempt, a), p.Delay(attempt, b); da != db {
			t.Fatalf("same seed gave %v and %v", da, db)
		}
	}
}

func TestDelayExtremes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	if d := (Policy{}).Delay(3, r); d != 0 {
		t.Errorf("zero policy: Delay = %v", d)
	}
	// The no-cap policy at a huge attempt has the largest Duration as ceiling; it must not panic.
	for range 100 {
		if d := (Policy{Base: time.Second}).Delay(math.MaxInt, r); d < 0 {
			t.Fatalf("Delay = %v", d)
		}
	}
	// nil source uses the global generator.
	if d := (Policy{Base: time.Millisecond, Cap: time.Millisecond}).Delay(1, nil); d < 0 || d > time.Millisecond {
		t.Errorf("Delay with nil source = %v", d)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled context wins over an hour-long wait; the test would hang otherwise.
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on cancelled ctx = %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on cancelled ctx = %v, want context.Canceled", err)
	}
}

// TestNoJitterIsTheCeiling: the comparison policy waits exactly the ceiling, every time.
func TestNoJitterIsTheCeiling(t *testing.T) {
	p := Policy{Base: time.Second, Cap: 8 * time.Second, NoJitter: true}
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 3 {
			if got := p.Delay(attempt, nil); got != want {
				t.Fatalf("attempt %d: delay %v, want %v", attempt, got, want)
			}
		}
	}
}
