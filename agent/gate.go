package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/ota/update"
)

// ErrUpdating refuses a payment while an update installs.
var ErrUpdating = errors.New("the terminal is installing an update; try again in a few minutes")

// quietGate keeps installs and payments apart. A payment enters (refused while an install
// holds the gate); an install waits until no payment runs — at the terminal, from the cash
// register, or settling — and, as asked, for the maintenance window and an empty batch, and
// then holds the gate until it is done.
//
// Both sides mark themselves before they look at the other (installing, then the payment
// count and the cash register's busy flag; the cash register, its active operation, then
// installing), so of two that start together at least one sees the other and stands back.
type quietGate struct {
	a          *Agent
	installing atomic.Bool
	mu         sync.Mutex
	payments   int
	changed    chan struct{}
	// poll is how often a waiting install looks again at what has no change signal (the
	// clock for the window, the batch, the cash register).
	poll time.Duration
}

func newQuietGate(a *Agent) *quietGate {
	return &quietGate{a: a, changed: make(chan struct{}), poll: 5 * time.Second}
}

// enter admits a payment or a settlement, or refuses it during an install.
func (g *quietGate) enter() (func(), error) {
	g.mu.Lock()
	g.payments++
	g.mu.Unlock()
	if g.installing.Load() {
		g.leave()
		return nil, ErrUpdating
	}
	var once sync.Once
	return func() { once.Do(g.leave) }, nil
}

func (g *quietGate) leave() {
	g.mu.Lock()
	g.payments--
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// admit is the cash register's check (ecr.Options.Admit).
func (g *quietGate) admit() error {
	if g.installing.Load() {
		return ErrUpdating
	}
	return nil
}

// Wait implements update.Gate.
func (g *quietGate) Wait(ctx context.Context, p update.GatePolicy) (func(), error) {
	for {
		why := g.notYet(p)
		if why == "" {
			g.installing.Store(true)
			g.mu.Lock()
			busy := g.payments > 0
			g.mu.Unlock()
			if !busy && (g.a.ecr.srv == nil || !g.a.ecr.srv.Busy()) {
				var once sync.Once
				return func() { once.Do(func() { g.installing.Store(false) }) }, nil
			}
			g.installing.Store(false)
			why = "a payment is in progress"
		}
		g.a.log.Debug("update waits", "for", why)
		g.mu.Lock()
		changed := g.changed
		g.mu.Unlock()
		t := time.NewTimer(g.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// notYet says what the install still waits for, "" when nothing (but payments, checked by Wait).
func (g *quietGate) notYet(p update.GatePolicy) string {
	g.mu.Lock()
	n := g.payments
	g.mu.Unlock()
	if n > 0 {
		return "a payment is in progress"
	}
	if p.Window && !g.a.updatesAllowedNow() {
		w := g.a.term.Active().TMS.MaintenanceWindow
		return fmt.Sprintf("the maintenance window %s–%s", w.Start, w.End)
	}
	if p.Settled && g.a.pay != nil {
		if batch, err := g.a.pay.Batch(); err != nil || len(batch) > 0 {
			return "a settled batch"
		}
	}
	return ""
}

// updatesAllowedNow applies the configuration's maintenance window to installs.
func (a *Agent) updatesAllowedNow() bool {
	t := a.term.Active().TMS
	if !t.UpdatesOnlyInWindow {
		return true
	}
	now := time.Now()
	return t.MaintenanceWindow.Contains(now.Hour()*60 + now.Minute())
}
