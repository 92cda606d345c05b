package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/sysinfo"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
)

// hostEvery is how often the host snapshot of the statistics is taken, for the whole process:
// reading /proc for every terminal would measure the simulator, not the agent.
const hostEvery = time.Minute

var host struct {
	mu   sync.Mutex
	at   time.Time
	snap sysinfo.Snapshot
}

// hostSnapshot is the process's shared host snapshot, at most hostEvery old. Callers only
// read it: its slices are shared.
func hostSnapshot(ctx context.Context, dir string) sysinfo.Snapshot {
	host.mu.Lock()
	defer host.mu.Unlock()
	if host.at.IsZero() || time.Since(host.at) >= hostEvery {
		host.snap = sysinfo.New(dir).Snapshot(ctx)
		host.at = time.Now()
	}
	return host.snap
}

// Stats is the terminal's statistics record as the agent would send it, filled from the
// parts a simulated terminal has (no keys, licence or payments).
func (t *Terminal) Stats(ctx context.Context) agent.Stats {
	return agent.Stats{
		Agent:    agent.AgentInfo{Version: buildinfo.Version, Commit: buildinfo.Commit, Target: buildinfo.Target()},
		Device:   board.Identity{Vendor: "posagent", Model: Model, Serial: t.id},
		Board:    BoardName,
		UptimeS:  int64(time.Since(t.started).Seconds()),
		Config:   t.term.Active().Version,
		Outbox:   t.out.State(),
		Link:     t.link.Status(),
		System:   hostSnapshot(ctx, t.sh.opts.Dir),
		Hardware: t.Devices(),
		OTA:      agent.OTAInfoOf(t.up.Status()),
	}
}

// SendStats queues a statistics record now and returns its seq.
func (t *Terminal) SendStats(ctx context.Context) (uint64, error) {
	return t.out.Append(ctx, tmsproto.StreamStats, "stats", t.Stats(ctx))
}
