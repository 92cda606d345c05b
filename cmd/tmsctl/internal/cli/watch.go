package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// streamList collects a repeatable flag.
type streamList []string

func (s *streamList) String() string     { return strings.Join(*s, ",") }
func (s *streamList) Set(v string) error { *s = append(*s, v); return nil }

func runWatch(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "watch", "[flags]", `
Prints every uplink record as one JSON line on stdout:
  {"device","topic","stream","seq","ts","kind","body"}  (+ "retained", or "error" and "raw")
and checks the seq of each device and stream, reporting on stderr:
  gap DEVICE/STREAM: 17..20 missing     (stats may be thinned by design: said so there)
  duplicate DEVICE/STREAM seq 5
  late DEVICE/STREAM seq 18             (arrived after a later one)
The first record of a stream sets the start; "online" is a retained presence record and is
not seq-checked, nor is any other retained record. Stops on interrupt or after --count
records, with a summary per stream on stderr.`)
	var cf connFlags
	cf.register(fs)
	device := fs.String("device", "+", "terminal `id`, or + for all")
	var streams streamList
	fs.Var(&streams, "stream", "`stream` to watch, repeatable; MQTT wildcards allowed (log/+) (default: all)")
	count := fs.Int("count", 0, "stop after this many records (0: until interrupted)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *count < 0 {
		return usageErr(fs, "--count must not be negative")
	}

	c, err := cf.connect(ctx, fs, env)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &watcher{env: env, checker: tmsclient.NewSeqChecker(), first: map[string]uint64{}, limit: *count, stop: cancel}
	sub, err := c.Watch(ctx, *device, streams, w.handle)
	if err != nil {
		var ie *tmsclient.InputError
		if errors.As(err, &ie) {
			return usageErr(fs, "%v", err)
		}
		return failf(env, ExitUsage, "%v", err)
	}
	fmt.Fprintf(env.Stderr, "watching %s\n", strings.Join(watchTopics(*device, streams), " "))
	<-ctx.Done()
	sub.Stop()
	w.summary()
	return ExitOK
}

func watchTopics(device string, streams []string) []string {
	if len(streams) == 0 {
		streams = []string{"#"}
	}
	out := make([]string, len(streams))
	for i, s := range streams {
		out[i] = tmsproto.UpTopic(device, s)
	}
	return out
}

// watcher prints records and checks their seqs. handle runs on the subscription's
// goroutines, so everything is under mu.
type watcher struct {
	env     Env
	checker *tmsclient.SeqChecker
	limit   int
	stop    context.CancelFunc

	mu    sync.Mutex
	n     int
	first map[string]uint64 // DEVICE/STREAM → first seq seen
}

func (w *watcher) handle(u tmsclient.Uplink) {
	line, err := tmsclient.UplinkJSON(u)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit > 0 && w.n >= w.limit {
		return
	}
	w.n++
	if err != nil {
		fmt.Fprintf(w.env.Stderr, "cannot render a record on %s: %v\n", u.Topic, err)
	} else {
		fmt.Fprintf(w.env.Stdout, "%s\n", line)
	}
	switch {
	case u.Err != nil:
		fmt.Fprintf(w.env.Stderr, "bad record on %s: %v\n", u.Topic, u.Err)
	case u.Stream != tmsproto.StreamOnline && !u.Retained:
		w.check(u)
	}
	if w.limit > 0 && w.n >= w.limit {
		w.stop()
	}
}

func (w *watcher) check(u tmsclient.Uplink) {
	name := u.DeviceID + "/" + u.Stream
	seq := u.Envelope.Seq
	o := w.checker.Observe(u.DeviceID, u.Stream, seq)
	if o.First {
		w.first[name] = seq
	}
	switch {
	case o.Invalid:
		fmt.Fprintf(w.env.Stderr, "invalid %s seq 0\n", name)
	case o.Duplicate:
		fmt.Fprintf(w.env.Stderr, "duplicate %s seq %d\n", name, seq)
	case o.Missing != nil && !o.First:
		fmt.Fprintf(w.env.Stderr, "gap %s: %s missing%s\n", name, o.Missing, thinned(u.Stream))
	case o.Late && seq > w.first[name]:
		fmt.Fprintf(w.env.Stderr, "late %s seq %d\n", name, seq)
	}
}

func thinned(stream string) string {
	if stream == tmsproto.StreamStats {
		return " (stats may be thinned)"
	}
	return ""
}

// summary reports every stream seen, with the holes that are still open. What lies below the
// first seq seen is history from before the watch, not loss.
func (w *watcher) summary() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.checker.Reports() {
		name := r.Device + "/" + r.Stream
		first := w.first[name]
		var missing []string
		for _, g := range r.Gaps {
			if g.To < first {
				continue
			}
			g.From = max(g.From, first)
			missing = append(missing, g.String())
		}
		fmt.Fprintf(w.env.Stderr, "summary %s: seq %d..%d, %d received, %d duplicates", name, first, r.Highest, r.Received, r.Duplicates)
		if len(missing) > 0 {
			fmt.Fprintf(w.env.Stderr, ", missing %s%s", strings.Join(missing, ","), thinned(r.Stream))
		}
		fmt.Fprintln(w.env.Stderr)
	}
}
