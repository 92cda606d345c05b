// Package fleet runs many simulated terminals in one process. Each terminal is built from the
// agent's real parts (agent/store, agent/outbox, agent/command, agent/termconfig,
// agent/tmslink, ota/update, ota/blob) with its own identity and storage directory, so what
// the broker sees is what a fleet of real agents would send. Only the board is simulated: a
// fixed identity and three in-process devices whose states a scenario can flip.
//
// The package also holds the TMS side of a fleet test: the Observer follows every terminal's
// uplink and proves per stream seq that nothing was lost.
//
// Cost matters more than usual here (ten thousand terminals on two cores): terminals share
// what a real terminal would have alone (the signature verifiers, the host snapshot taken at
// most once a minute), their periodic statistics use runtime timers rather than goroutines,
// and they log at Warn and above only.
package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/ota/manifest"
)

// DefaultPrefix starts the device ids of a fleet whose Options.Prefix is empty.
const DefaultPrefix = "FS-"

// minWidth is the fewest digits of a device id's index: worker processes that each run a
// slice of one fleet then agree on the ids without being told the fleet's size.
const minWidth = 5

// sampleEvery is the resolution of the connection timeline's connected and failure counts.
const sampleEvery = 100 * time.Millisecond

// Options configure a fleet.
type Options struct {
	N      int
	Prefix string // device ids are Prefix + zero-padded index; default DefaultPrefix
	First  int    // index of the first terminal (worker processes run slices of one fleet)
	// Width is the number of digits of the index; 0 = enough for First+N-1, at least 5.
	Width int
	Dir   string // root; terminal data in Dir/<id>/ (created)

	Broker   string // tcp:// or ssl://
	TLS      *tls.Config
	Password func(id string) string

	CommandKeys map[string]ed25519.PublicKey // TMS command keys terminals trust (keyId -> pub)
	ReleaseKeys map[string]ed25519.PublicKey // release keys for ota.install

	KeepAlive, PingTimeout time.Duration  // 0 = the agent's defaults (300 s, 20 s)
	ConnectTimeout         time.Duration  // 0 = the agent's default (30 s)
	Backoff                backoff.Policy // zero = the agent's default {2s, 5m}
	// StatsInterval is the period of the statistics records when the TMS has not pushed one
	// in the terminal configuration (tms.statsIntervalSec); 0 = 1 h, the agent's default.
	StatsInterval time.Duration
	StartRate     float64      // terminals started per second (0 = as fast as possible)
	Dialer        *wire.Dialer // nil = a default one
	Logger        *slog.Logger // terminals log at Warn and above only through it
}

// ErrOptions is wrapped by Start's errors about its options.
var ErrOptions = errors.New("fleet: invalid options")

// Fleet is a running set of terminals.
type Fleet struct {
	opts    Options
	started time.Time
	shared  *shared

	terms []*Terminal
	byID  map[string]*Terminal
	// slots are the terminals as they start, for the sampler that runs meanwhile; terms is
	// set from them once every terminal is started.
	slots []atomic.Pointer[Terminal]

	ctx    context.Context
	cancel context.CancelFunc

	tl        timeline
	samplerWG sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// DeviceIDs are the ids of the terminals first..first+n-1 of a fleet with this prefix
// ("" = DefaultPrefix) and width (0 = the default rule of Options.Width): what the broker
// needs accounts for.
func DeviceIDs(prefix string, first, n, width int) []string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if width <= 0 {
		width = max(minWidth, len(strconv.Itoa(max(first+n-1, 0))))
	}
	ids := make([]string, n)
	for i := range n {
		s := strconv.Itoa(first + i)
		for len(s) < width {
			s = "0" + s
		}
		ids[i] = prefix + s
	}
	return ids
}

func (o *Options) check() error {
	switch {
	case o.N <= 0:
		return fmt.Errorf("%w: N must be positive", ErrOptions)
	case o.First < 0:
		return fmt.Errorf("%w: First must not be negative", ErrOptions)
	case o.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrOptions)
	case o.Broker == "":
		return fmt.Errorf("%w: Broker is required", ErrOptions)
	case o.Password == nil:
		return fmt.Errorf("%w: Password is required", ErrOptions)
	case o.StartRate < 0 || math.IsNaN(o.StartRate) || math.IsInf(o.StartRate, 0):
		return fmt.Errorf("%w: StartRate %v", ErrOptions, o.StartRate)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Backoff == (backoff.Policy{}) {
		o.Backoff = backoff.Policy{Base: 2 * time.Second, Cap: 5 * time.Minute}
	}
	if o.StatsInterval <= 0 {
		o.StatsInterval = time.Hour
	}
	if o.Dialer == nil {
		o.Dialer = &wire.Dialer{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Start opens and starts every terminal (at StartRate) and returns when all are started, not
// necessarily connected. ctx bounds the start only: the terminals run until Close. On error
// nothing is left running.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	ids := DeviceIDs(opts.Prefix, opts.First, opts.N, opts.Width)
	for _, id := range []string{ids[0], ids[len(ids)-1]} {
		if err := tmsproto.ValidDeviceID(id); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOptions, err)
		}
	}
	sh, err := newShared(opts)
	if err != nil {
		return nil, err
	}
	f := &Fleet{opts: opts, started: time.Now(), shared: sh, slots: make([]atomic.Pointer[Terminal], len(ids)),
		byID: make(map[string]*Terminal, len(ids))}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.samplerWG.Go(f.sample)

	if err := f.startAll(ctx, ids); err != nil {
		_ = f.Close()
		return nil, err
	}
	for _, t := range f.terms {
		f.byID[t.id] = t
	}
	return f, nil
}

// startAll opens the terminals on a few workers (opening is mostly waiting for fsyncs), paced
// at StartRate when one is set.
func (f *Fleet) startAll(ctx context.Context, ids []string) error {
	workers := min(len(ids), 4*runtime.GOMAXPROCS(0))
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for i := range next {
				t, err := f.openTerminal(ids[i])
				if err != nil {
					errOnce.Do(func() { firstErr = err; close(fail) })
					continue
				}
				t.start(f.ctx)
				f.slots[i].Store(t)
			}
		})
	}
	var tick *time.Ticker
	if f.opts.StartRate > 0 {
		if every := time.Duration(float64(time.Second) / f.opts.StartRate); every > 0 {
			tick = time.NewTicker(every)
			defer tick.Stop()
		}
	}
feed:
	for i := range ids {
		if tick != nil && i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				break feed
			case <-fail:
				break feed
			}
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		case <-fail:
			break feed
		}
	}
	close(next)
	wg.Wait()
	for i := range f.slots {
		if t := f.slots[i].Load(); t != nil {
			f.terms = append(f.terms, t)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fleet: start: %w", err)
	}
	return nil
}

// Terminals returns the terminals in index order.
func (f *Fleet) Terminals() []*Terminal { return f.terms }

// Terminal returns the terminal of id, or nil.
func (f *Fleet) Terminal(id string) *Terminal { return f.byID[id] }

// Started is when Start began; the timeline counts from it.
func (f *Fleet) Started() time.Time { return f.started }

// Close stops every terminal cleanly (each link says goodbye on its retained presence topic)
// and closes their storage. It may be called more than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		f.cancel()
		f.samplerWG.Wait()
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0))
		for _, t := range f.terms {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := t.close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// Snapshot is the fleet's state at one moment.
type Snapshot struct {
	At                        time.Time
	Terminals, Connected      int
	Connects, ConnectFailures uint64 // totals since start
	Published, Acked          uint64 // records up: handed to the client, PUBACKed
	Commands                  uint64 // commands down, stored in the inboxes
	Traffic                   wire.Traffic
	OutboxRecords             int
	Errors                    map[string]int // last error texts of links that are down, counted
	HeapBytes, Goroutines     uint64         // of this process
}

// maxErrorKinds bounds Snapshot.Errors; the rest are counted under "other".
const maxErrorKinds = 16

// Snapshot sums every terminal's link status, outbox and traffic. Cheap enough to call every
// 100 ms at 10 000 terminals, so its Traffic counts the TCP segments of closed connections
// only (wire.Meter.Counted); Traffic reads the live ones' too.
func (f *Fleet) Snapshot() Snapshot {
	s := Snapshot{At: time.Now(), Terminals: len(f.terms)}
	for _, t := range f.terms {
		st := t.link.Status()
		if st.Connected {
			s.Connected++
		} else if st.LastError != "" {
			if s.Errors == nil {
				s.Errors = map[string]int{}
			}
			msg := maskAddrs(st.LastError)
			if _, ok := s.Errors[msg]; !ok && len(s.Errors) >= maxErrorKinds {
				msg = "other"
			}
			s.Errors[msg]++
		}
		s.Connects += st.Connects
		s.ConnectFailures += st.Failures
		s.Published += st.Published
		s.Acked += st.Acked
		s.Commands += st.Commands
		s.OutboxRecords += t.out.State().Records
		s.Traffic = s.Traffic.Add(t.meter.Counted())
	}
	s.HeapBytes, s.Goroutines = processMetrics()
	return s
}

// maskAddrs replaces the addresses in an error text ("read tcp 127.0.0.1:41234->…") by ADDR,
// so that the errors of many terminals count together. A hand-written scan: in a reconnect
// storm it runs for every terminal at every snapshot.
func maskAddrs(s string) string {
	isAddr := func(c byte) bool { return c >= '0' && c <= '9' || c == '.' || c == ':' }
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] < '0' || s[i] > '9' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isAddr(s[j]) {
			j++
		}
		for j > i+1 && s[j-1] == ':' {
			j-- // a colon after the port is the text's own
		}
		if run := s[i:j]; strings.Contains(run, ":") || strings.Count(run, ".") == 3 {
			b.WriteString("ADDR")
		} else {
			b.WriteString(run)
		}
		i = j
	}
	return b.String()
}

// Traffic sums every terminal's traffic now, reading the TCP segment counters of every live
// connection from the kernel.
func (f *Fleet) Traffic() wire.Traffic {
	var sum wire.Traffic
	for _, t := range f.terms {
		sum = sum.Add(t.meter.Traffic())
	}
	return sum
}

var processSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/sched/goroutines:goroutines"},
}

var processMu sync.Mutex

// processMetrics reads the heap in use and the goroutine count without stopping the world
// (runtime.ReadMemStats would, at every snapshot).
func processMetrics() (heap, goroutines uint64) {
	processMu.Lock()
	defer processMu.Unlock()
	metrics.Read(processSamples)
	if v := processSamples[0].Value; v.Kind() == metrics.KindUint64 {
		heap = v.Uint64()
	}
	if v := processSamples[1].Value; v.Kind() == metrics.KindUint64 {
		goroutines = v.Uint64()
	}
	return heap, goroutines
}

// Bucket is one interval of the connection timeline.
type Bucket struct {
	At                 time.Duration // start of the interval, since Start
	Connects, Failures int           // sessions established, connection attempts failed
	Connected          int           // terminals connected at the end of the interval
}

// timeline keeps connect times exactly (OnConnect) and the connected and failure counts as
// sampled every sampleEvery, recorded only when they change.
type timeline struct {
	mu        sync.Mutex
	connects  []time.Duration
	failures  []countAt // failures since the previous sample
	connected []countAt // connected count from this moment on
}

type countAt struct {
	at time.Duration
	n  int
}

func (tl *timeline) connect(at time.Duration) {
	tl.mu.Lock()
	tl.connects = append(tl.connects, at)
	tl.mu.Unlock()
}

// sample records the connected count and the new failures every sampleEvery until the fleet
// stops.
func (f *Fleet) sample() {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	var lastFailures uint64
	lastConnected := -1
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
		}
		connected, failures := 0, uint64(0)
		for i := range f.slots {
			t := f.slots[i].Load()
			if t == nil {
				continue // still starting
			}
			st := t.link.Status()
			if st.Connected {
				connected++
			}
			failures += st.Failures
		}
		at := time.Since(f.started)
		f.tl.mu.Lock()
		if connected != lastConnected {
			f.tl.connected = append(f.tl.connected, countAt{at, connected})
			lastConnected = connected
		}
		if failures > lastFailures {
			f.tl.failures = append(f.tl.failures, countAt{at, int(failures - lastFailures)})
			lastFailures = failures
		}
		f.tl.mu.Unlock()
	}
}

// Timeline returns the connection timeline from Start until now in intervals of bucket
// (connects are exact; connected and failure counts have a resolution of 100 ms).
func (f *Fleet) Timeline(bucket time.Duration) []Bucket {
	if bucket <= 0 {
		bucket = sampleEvery
	}
	now := time.Since(f.started)
	n := int(now/bucket) + 1
	out := make([]Bucket, n)
	for i := range out {
		out[i].At = time.Duration(i) * bucket
	}
	index := func(at time.Duration) int { return min(int(at/bucket), n-1) }
	f.tl.mu.Lock()
	defer f.tl.mu.Unlock()
	for _, at := range f.tl.connects {
		out[index(at)].Connects++
	}
	for _, c := range f.tl.failures {
		out[index(c.at)].Failures += c.n
	}
	// Connected at the end of a bucket: the last sample in it, else the previous bucket's.
	samples := f.tl.connected
	j, cur := 0, 0
	for i := range out {
		end := out[i].At + bucket
		for j < len(samples) && samples[j].at < end {
			cur = samples[j].n
			j++
		}
		out[i].Connected = cur
	}
	return out
}

// shared is what every terminal of a fleet uses read-only.
type shared struct {
	opts     Options
	commands *tmsproto.Verifier
	releases *manifest.Verifier
	log      *slog.Logger
	dial     func(ctx context.Context, addr string, t *Terminal) (net.Conn, error)
}

func newShared(opts Options) (*shared, error) {
	cmds, err := tmsproto.NewVerifier(opts.CommandKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: command keys: %w", ErrOptions, err)
	}
	rels, err := manifest.NewVerifier(opts.ReleaseKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: release keys: %w", ErrOptions, err)
	}
	d := opts.Dialer
	return &shared{
		opts: opts, commands: cmds, releases: rels,
		log: slog.New(warnOnly{opts.Logger.Handler()}),
		dial: func(ctx context.Context, addr string, t *Terminal) (net.Conn, error) {
			return d.Dial(ctx, addr, t.meter, t.wlink)
		},
	}, nil
}

// warnOnly passes records of level Warn and above: the agent's Info lines, times ten
// thousand terminals, would measure the logger instead of the agent.
type warnOnly struct{ h slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.h.Enabled(ctx, l)
}
func (w warnOnly) Handle(ctx context.Context, r slog.Record) error { return w.h.Handle(ctx, r) }
func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler           { return warnOnly{w.h.WithAttrs(as)} }
func (w warnOnly) WithGroup(name string) slog.Handler              { return warnOnly{w.h.WithGroup(name)} }

// terminalDir is where a terminal keeps its data.
func terminalDir(root, id string) string { return filepath.Join(root, id) }
