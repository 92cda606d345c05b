package input

import "time"

// debouncer turns sampled levels into a state that changes only after the new level has
// held for the whole window. It does no waiting of its own: the caller samples on every
// edge and when the returned recheck delay has passed, so time comes from whatever clock
// the caller uses.
type debouncer struct {
	window    time.Duration
	state     bool      // the debounced level
	candidate bool      // the last level seen
	since     time.Time // when candidate was first seen
}

func newDebouncer(window time.Duration, initial bool, now time.Time) *debouncer {
	return &debouncer{window: window, state: initial, candidate: initial, since: now}
}

// observe records level seen at now. It reports whether the debounced state changed and,
// when a different level is still waiting to prove itself, how long until it has.
func (d *debouncer) observe(now time.Time, level bool) (changed bool, recheck time.Duration) {
	if level != d.candidate {
		d.candidate, d.since = level, now
	}
	if d.candidate == d.state {
		return false, 0
	}
	if held := now.Sub(d.since); held < d.window {
		return false, d.window - held
	}
	d.state = d.candidate
	return true, 0
}
