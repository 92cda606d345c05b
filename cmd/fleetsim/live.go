package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/posagent/posagent/internal/fleet"
)

// startLive prints a progress line on stderr every -every until the fleet closes.
func (s *sim) startLive(ctx context.Context) {
	if s.cfg.Every <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(s.cfg.Every)
		defer tick.Stop()
		var prev fleet.Snapshot
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			snap, _, err := s.snapshot(ctx)
			if err != nil {
				continue
			}
			fmt.Fprintln(s.stderr, liveLine(s.currentPhase(), snap.At.Sub(s.started), snap, prev))
			prev = snap
		}
	})
	s.liveStop = func() {
		cancel()
		wg.Wait()
	}
}

// liveLine is one progress line: connected terminals, connects per second, records per
// second up and commands per second down since the previous line, bytes per terminal since
// the start, outbox backlog, heap, and the errors of the links that are down.
func liveLine(phase string, elapsed time.Duration, cur, prev fleet.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.1fs %-9s connected %d/%d", elapsed.Seconds(), phase, cur.Connected, cur.Terminals)
	if dt := cur.At.Sub(prev.At).Seconds(); !prev.At.IsZero() && dt > 0 {
		fmt.Fprintf(&b, "  conn/s %.1f  up %.1f msg/s  down %.1f msg/s",
			float64(cur.Connects-prev.Connects)/dt,
			float64(cur.Published-prev.Published)/dt,
			float64(cur.Commands-prev.Commands)/dt)
	}
	if n := max(cur.Terminals, 1); n > 0 {
		fmt.Fprintf(&b, "  per terminal up %s down %s", iec(float64(cur.Traffic.BytesOut)/float64(n)),
			iec(float64(cur.Traffic.BytesIn)/float64(n)))
	}
	fmt.Fprintf(&b, "  outbox %d  heap %s", cur.OutboxRecords, iec(float64(cur.HeapBytes)))
	if len(cur.Errors) > 0 {
		b.WriteString("  errors:")
		for _, k := range sortedKeys(cur.Errors) {
			fmt.Fprintf(&b, " %q×%d", k, cur.Errors[k])
		}
	}
	return b.String()
}

// iec formats a byte count with a binary unit.
func iec(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
