package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/logging"
)

// diagEventsKept is the size of the console's event view.
const diagEventsKept = 200

// ---- events ----

// eventRing keeps the most recent events for the console, masked as the logs are.
type eventRing struct {
	mu    sync.Mutex
	lines []diag.EventLine
	next  int
	full  bool
}

func (r *eventRing) add(kind string, body map[string]any) {
	line := diag.EventLine{Time: time.Now(), Kind: kind, Fields: maskFields(body)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lines == nil {
		r.lines = make([]diag.EventLine, diagEventsKept)
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

func (r *eventRing) recent(n int) []diag.EventLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := r.next
	if r.full {
		count = len(r.lines)
	}
	if n <= 0 || n > count {
		n = count
	}
	out := make([]diag.EventLine, 0, n)
	start := (r.next - n + len(r.lines)) % max(len(r.lines), 1)
	for i := range n {
		out = append(out, r.lines[(start+i)%len(r.lines)])
	}
	return out
}

// maskFields applies the logging redaction rules to an event body: values under secret-looking
// names dropped, card numbers masked, and anything structured flattened to JSON values first so
// the masking reaches inside it.
func maskFields(body map[string]any) map[string]any {
	if len(body) == 0 {
		return nil
	}
	out := make(map[string]any, len(body))
	for k, v := range body {
		out[k] = maskValue(k, v)
	}
	return out
}

func maskValue(key string, v any) any {
	if logging.SensitiveKey(key) {
		return logging.Redacted
	}
	switch x := v.(type) {
	case nil, bool, float32, float64:
		return x
	case string:
		return logging.MaskPANs(x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		s := fmt.Sprint(x)
		if m := logging.MaskPANs(s); m != s {
			return m
		}
		return x
	case []byte:
		return logging.Redacted // raw bytes in an event are not for a console
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return logging.MaskPANs(fmt.Sprint(v))
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return logging.Redacted
	}
	return maskJSON(key, generic)
}

// maskJSON masks a decoded JSON value in place of maskValue's generic case.
func maskJSON(key string, v any) any {
	if logging.SensitiveKey(key) {
		return logging.Redacted
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = maskJSON(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskJSON("", e)
		}
		return x
	case string:
		return logging.MaskPANs(x)
	case float64:
		if x >= 1e12 {
			s := fmt.Sprintf("%.0f", x)
			if m := logging.MaskPANs(s); m != s {
				return m
			}
		}
		return x
	}
	return v
}

// ---- resource history ----

// sampleRing keeps the resource samples for the charts.
type sampleRing struct {
	mu      sync.Mutex
	samples []diag.Sample
	next    int
	full    bool
}

func (r *sampleRing) add(s diag.Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		r.samples = make([]diag.Sample, config.HistorySamples)
	}
	r.samples[r.next] = s
	r.next = (r.next + 1) % len(r.samples)
	if r.next == 0 {
		r.full = true
	}
}

func (r *sampleRing) all() []diag.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		return []diag.Sample{}
	}
	if !r.full {
		return append([]diag.Sample{}, r.samples[:r.next]...)
	}
	return append(append([]diag.Sample{}, r.samples[r.next:]...), r.samples[:r.next]...)
}

func (r *sampleRing) latest() (diag.Sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil || (!r.full && r.next == 0) {
		return diag.Sample{}, false
	}
	return r.samples[(r.next-1+len(r.samples))%len(r.samples)], true
}

// cpuMeter turns the process's CPU time into a percentage of one core over the interval
// between two readings.
type cpuMeter struct {
	mu   sync.Mutex
	wall time.Time
	cpu  time.Duration
}

func (m *cpuMeter) percent(now time.Time) float64 {
	used, ok := processCPU()
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prevWall, prevCPU := m.wall, m.cpu
	m.wall, m.cpu = now, used
	if prevWall.IsZero() || !now.After(prevWall) {
		return 0
	}
	pct := float64(used-prevCPU) / float64(now.Sub(prevWall)) * 100
	return max(pct, 0)
}

// sample reads the resources now.
func (a *Agent) sample(ctx context.Context) diag.Sample {
	now := time.Now()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sys := a.sys.Resources() // not Snapshot: its interfaces and release are not charted
	return diag.Sample{
		Time:       now,
		CPUPercent: a.diag.cpu.percent(now),
		RSSBytes:   int64(sys.ProcessRSS),
		HeapBytes:  int64(ms.HeapAlloc),
		Goroutines: runtime.NumGoroutine(),
		DiskFree:   int64(sys.DiskFree),
		DiskTotal:  int64(sys.DiskTotal),
		OutboxRecs: a.Outbox.State().Records,
	}
}

// runDiagHistory is the diag.history service: a resource sample every history_interval.
func (a *Agent) runDiagHistory(ctx context.Context) error {
	a.diag.history.add(a.sample(ctx))
	t := time.NewTicker(a.cfg.Diag.HistoryInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.diag.history.add(a.sample(ctx))
		}
	}
}

// ---- the Terminal's views of them ----

func (t diagTerminal) History() []diag.Sample { return t.a.diag.history.all() }

func (t diagTerminal) Events(n int) []diag.EventLine { return t.a.diag.events.recent(n) }

func (t diagTerminal) Logs(n int) []string {
	if t.a.diag.recent == nil {
		return []string{}
	}
	lines := t.a.diag.recent(n)
	if lines == nil {
		return []string{}
	}
	return lines
}
