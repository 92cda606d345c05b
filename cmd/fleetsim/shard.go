package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
)

// shard is one part of the fleet as the parent sees it: in this process or in a worker.
type shard interface {
	call(ctx context.Context, req request) (response, error)
	// close ends the shard (its fleet, and a worker process) and returns the process's last
	// usage figures when it has them.
	close(ctx context.Context) (*procUsage, error)
	label() string
}

// ErrNotStarted answers requests to a shard whose fleet is not running.
var ErrNotStarted = errors.New("fleet not started")

// shardState runs one part of the fleet and answers the parent's requests. It is the same
// code in this process (localShard) and in a worker process (runWorker).
type shardState struct {
	role string
	// termLog is the terminals' logger: their link-down warnings, times ten thousand, would
	// drown the run, so it passes errors only unless -v (the live line counts the errors).
	termLog *slog.Logger
	// password overrides the derived device passwords (tests with their own accounts).
	password func(id string) string

	mu   sync.Mutex
	f    *fleet.Fleet
	spec fleetSpec
	cut  []*fleet.Terminal
}

func (s *shardState) fleet() (*fleet.Fleet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, ErrNotStarted
	}
	return s.f, nil
}

// handle runs one request. ctx bounds the request, runCtx the fleet it starts.
func (s *shardState) handle(ctx, runCtx context.Context, req request) response {
	resp := response{ID: req.ID}
	var err error
	switch req.Op {
	case opStart:
		err = s.start(runCtx, req.Spec, &resp)
	case opSnapshot:
		var f *fleet.Fleet
		if f, err = s.fleet(); err == nil {
			snap := f.Snapshot()
			if req.Full {
				snap.Traffic = f.Traffic()
			}
			resp.Snapshot = &snap
		}
		u := selfUsage(s.role)
		if resp.Snapshot != nil {
			u.Terminals = resp.Snapshot.Terminals
		}
		resp.Usage = &u
	case opTimeline:
		var f *fleet.Fleet
		if f, err = s.fleet(); err == nil {
			resp.Started, resp.Buckets = f.Started(), f.Timeline(req.Bucket)
		}
	case opPartition:
		resp.Count, err = s.partition(req.Share, req.Mode)
	case opHeal:
		resp.Count, err = s.heal()
	case opEmit:
		resp.Count, err = s.emit(ctx, req.Kind, req.Events)
	case opTerminals:
		resp.Terminals, err = s.terminals(req.Streams, req.Component)
	case opClose:
		var n int
		n, err = s.closeFleet()
		u := selfUsage(s.role)
		u.Terminals = n
		resp.Usage = &u
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return resp
}

func (s *shardState) start(ctx context.Context, spec *fleetSpec, resp *response) error {
	if spec == nil {
		return errors.New("start without a spec")
	}
	s.mu.Lock()
	running := s.f != nil
	s.mu.Unlock()
	if running {
		return errors.New("fleet already running")
	}
	tlsConf, err := spec.TLS.Config()
	if err != nil {
		return err
	}
	password := s.password
	if password == nil {
		secret := spec.DeviceSecret
		password = func(id string) string { return devicePassword(secret, id) }
	}
	f, err := fleet.Start(ctx, fleet.Options{
		N: spec.N, Prefix: spec.Prefix, First: spec.First, Width: spec.Width, Dir: spec.Dir,
		Broker: spec.Broker, TLS: tlsConf, Password: password,
		CommandKeys: spec.CommandKeys, ReleaseKeys: spec.ReleaseKeys,
		KeepAlive: spec.KeepAlive, PingTimeout: spec.PingTimeout, StatsInterval: spec.StatsInterval,
		Backoff:   backoffPolicy(spec),
		StartRate: spec.StartRate,
		Dialer:    &wire.Dialer{LocalAddrs: spec.LocalAddrs},
		Logger:    s.termLog,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.f, s.spec, s.cut = f, *spec, nil
	s.mu.Unlock()
	resp.Started = f.Started()
	return nil
}

// backoffPolicy fills the agent's defaults (2 s, 5 min) for the parts not given: the fleet
// takes a zero policy as the default, but a policy with only NoJitter set would not be zero.
func backoffPolicy(spec *fleetSpec) backoff.Policy {
	p := backoff.Policy{Base: spec.BackoffBase, Cap: spec.BackoffCap, NoJitter: spec.NoJitter}
	if p.Base <= 0 {
		p.Base = defaultBackoffBase
	}
	if p.Cap <= 0 {
		p.Cap = defaultBackoffCap
	}
	return p
}

// cutIndex reports whether the terminal of global index g is in a partition of share: the
// terminals are spread evenly over the fleet, and every shard decides alone the same way.
func cutIndex(g int, share float64) bool {
	return math.Floor(float64(g+1)*share) > math.Floor(float64(g)*share)
}

func (s *shardState) partition(share float64, mode wire.Mode) (int, error) {
	if mode == wire.Up {
		return 0, errors.New("partition mode up")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, ErrNotStarted
	}
	if s.cut != nil {
		return 0, errors.New("a partition is already in place")
	}
	s.cut = []*fleet.Terminal{}
	for i, t := range s.f.Terminals() {
		if cutIndex(s.spec.First+i, share) {
			t.Link().Set(mode)
			s.cut = append(s.cut, t)
		}
	}
	return len(s.cut), nil
}

func (s *shardState) heal() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, ErrNotStarted
	}
	for _, t := range s.cut {
		t.Link().Set(wire.Up)
	}
	n := len(s.cut)
	s.cut = nil
	return n, nil
}

// emit queues n events on every cut terminal, a few terminals at a time (an append is a
// committed transaction).
func (s *shardState) emit(ctx context.Context, kind string, n int) (int, error) {
	s.mu.Lock()
	cut := s.cut
	s.mu.Unlock()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		queued int
		errs   []error
	)
	sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0))
	for _, t := range cut {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for i := range n {
				if _, err := t.Event(ctx, kind, map[string]any{"n": i + 1, "of": n}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", t.ID(), err))
					mu.Unlock()
					return
				}
				mu.Lock()
				queued++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return queued, errors.Join(errs...)
}

func (s *shardState) terminals(streams []string, component string) ([]terminalRow, error) {
	f, err := s.fleet()
	if err != nil {
		return nil, err
	}
	ts := f.Terminals()
	rows := make([]terminalRow, len(ts))
	for i, t := range ts {
		st := t.Status()
		r := terminalRow{ID: t.ID(), Connected: st.Connected, Connects: st.Connects, Failures: st.Failures,
			LastError: st.LastError, Traffic: t.Meter().Traffic(), Outbox: t.Outbox().Records,
			ConfigVersion: t.ConfigVersion()}
		if component != "" {
			ota := t.OTA()
			r.OTAStage = string(ota.Stage)
			r.OTAVersion = ota.Installed[component].Version
		}
		if len(streams) > 0 {
			r.LastSeq = make(map[string]uint64, len(streams))
			for _, stream := range streams {
				seq, err := t.LastSeq(stream)
				if err != nil {
					return nil, fmt.Errorf("%s: last seq of %s: %w", t.ID(), stream, err)
				}
				r.LastSeq[stream] = seq
			}
		}
		rows[i] = r
	}
	return rows, nil
}

// closeFleet closes the fleet and returns how many terminals it had.
func (s *shardState) closeFleet() (int, error) {
	s.mu.Lock()
	f := s.f
	s.f, s.cut = nil, nil
	s.mu.Unlock()
	if f == nil {
		return 0, nil
	}
	return len(f.Terminals()), f.Close()
}

// localShard runs its part of the fleet in this process.
type localShard struct {
	st     *shardState
	runCtx context.Context
}

func (l *localShard) call(ctx context.Context, req request) (response, error) {
	resp := l.st.handle(ctx, l.runCtx, req)
	if resp.Err != "" {
		return resp, fmt.Errorf("%s: %s: %s", l.label(), req.Op, resp.Err)
	}
	return resp, nil
}

func (l *localShard) close(context.Context) (*procUsage, error) {
	n, err := l.st.closeFleet()
	u := selfUsage(l.st.role)
	u.Terminals = n
	return &u, err
}

func (l *localShard) label() string { return l.st.role }
