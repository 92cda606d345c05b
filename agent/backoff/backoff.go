// Package backoff computes retry delays: exponential growth with full jitter.
//
// Full jitter (sleep a random time in [0, min(cap, base·2^attempt)]) spreads a fleet of
// terminals that lost the broker at the same moment over the whole window, so they do not
// reconnect in lock-step waves when it comes back.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff with full jitter. Base is the ceiling of the first retry,
// each further attempt doubles it, and Cap bounds it. A Base ≤ 0 means no delay; a Cap ≤ 0
// means no cap other than the largest time.Duration.
type Policy struct {
	Base time.Duration
	Cap  time.Duration
	// NoJitter makes every delay the ceiling itself: the textbook exponential backoff that
	// sends a whole fleet back in lock-step waves. It exists so the fleet simulator can show
	// what full jitter saves; a terminal never sets it.
	NoJitter bool
}

// Ceiling is the upper bound of the delay before retry number attempt (0 for the first
// retry): min(Cap, Base·2^attempt), computed without overflow for any attempt.
func (p Policy) Ceiling(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	limit := p.Cap
	if limit <= 0 {
		limit = math.MaxInt64
	}
	if p.Base >= limit {
		return limit
	}
	if attempt <= 0 {
		return p.Base
	}
	// Base·2^attempt > limit  ⇔  Base > limit>>attempt; checking it this way round never
	// multiplies, so it cannot overflow (and any attempt ≥ 63 is over every limit).
	if attempt >= 63 || p.Base > limit>>uint(attempt) {
		return limit
	}
	return p.Base << uint(attempt)
}

// Delay is a random delay in [0, Ceiling(attempt)]. r supplies the randomness (tests pass a
// seeded source); nil uses the process-wide generator, which is safe for concurrent use.
func (p Policy) Delay(attempt int, r *rand.Rand) time.Duration {
	c := p.Ceiling(attempt)
	if c <= 0 {
		return 0
	}
	if p.NoJitter {
		return c
	}
	n := int64(c)
	if n < math.MaxInt64 {
		n++ // make the ceiling itself reachable
	}
	if r == nil {
		return time.Duration(rand.Int64N(n))
	}
	return time.Duration(r.Int64N(n))
}

// Sleep waits d or until ctx is done, whichever is first, and returns ctx's error in the
// second case. Unlike time.Sleep it lets a shutdown interrupt a long backoff.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
