// Package audittest records audit events for tests of the packages that emit them
// (operators, cash-register registrations): a Recorder's Fn is the audit hook.
package audittest

import (
	"context"
	"sync"
)

// Recorder keeps every event it is given; safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Event is one audit event.
type Event struct {
	Action string
	Fields map[string]any
}

// Fn is the audit hook: func(ctx, action, fields).
func (r *Recorder) Fn(_ context.Context, action string, fields map[string]any) {
	r.mu.Lock()
	r.events = append(r.events, Event{action, fields})
	r.mu.Unlock()
}

// Find returns the fields of every event of one action, in order.
func (r *Recorder) Find(action string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, e := range r.events {
		if e.Action == action {
			out = append(out, e.Fields)
		}
	}
	return out
}

// All returns every event, in order.
func (r *Recorder) All() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}
