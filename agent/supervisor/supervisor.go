// Package supervisor keeps the agent's long-running services alive.
//
// A terminal runs unattended for months: a service that fails or panics is restarted with
// backoff instead of taking the agent down, and the TMS sees in the statistics which service
// is flapping and why.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/backoff"
)

// State is where a service is in its life.
type State string

const (
	StatePending    State = "pending"    // added, Run not started yet
	StateRunning    State = "running"    // its function is executing
	StateRestarting State = "restarting" // it failed and waits out its backoff
	StateDone       State = "done"       // it returned nil on its own; not restarted
	StateStopped    State = "stopped"    // it returned because the supervisor shut down
)

// ServiceStatus is a snapshot of one service for the statistics.
type ServiceStatus struct {
	Name     string `cbor:"name"`
	State    State  `cbor:"state"`
	Restarts int    `cbor:"restarts"` // times restarted after an error or a panic
	Panics   int    `cbor:"panics"`   // how many of those failures were panics
	// Failures in a row without a healthy run in between; it drives the backoff.
	ConsecutiveFailures int       `cbor:"consecutiveFailures"`
	LastError           string    `cbor:"lastError,omitempty"`
	LastErrorAt         time.Time `cbor:"lastErrorAt,omitempty"`
	Since               time.Time `cbor:"since,omitempty"` // when State was entered
}

// PanicError is the failure recorded when a service panics.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// ErrDuplicate is returned by Add for a name already in use.
var ErrDuplicate = errors.New("supervisor: duplicate service name")

// ErrClosed is returned by Add after Run has begun shutting down.
var ErrClosed = errors.New("supervisor: shut down")

// Options tune a Supervisor. Zero values take the defaults.
type Options struct {
	// Backoff between restarts; default Base 1s, Cap 1m.
	Backoff backoff.Policy
	// A service that ran this long before failing counts as having been healthy, and its
	// backoff starts again from the first step; default 1m.
	HealthyAfter time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Supervisor runs services and restarts them when they fail.
type Supervisor struct {
	policy       backoff.Policy
	healthyAfter time.Duration
	log          *slog.Logger
	now          func() time.Time // replaced in tests to simulate long healthy runs

	mu       sync.Mutex
	services []*service // in the order added
	ctx      context.Context
	started  bool
	closed   bool
	wg       sync.WaitGroup
}

type service struct {
	name string
	run  func(ctx context.Context) error
	st   ServiceStatus // guarded by Supervisor.mu
}

// New returns a Supervisor with no services.
func New(o Options) *Supervisor {
	if o.Backoff.Base <= 0 {
		o.Backoff.Base = time.Second
	}
	if o.Backoff.Cap <= 0 {
		o.Backoff.Cap = time.Minute
	}
	if o.HealthyAfter <= 0 {
		o.HealthyAfter = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Supervisor{policy: o.Backoff, healthyAfter: o.HealthyAfter, log: o.Logger, now: time.Now}
}

// Add registers a service. Before Run it waits for Run; while Run is going it starts at once,
// so a service can be added when the configuration enables it.
func (s *Supervisor) Add(name string, run func(ctx context.Context) error) error {
	if name == "" || run == nil {
		return fmt.Errorf("supervisor: service needs a name and a function")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: cannot add %q", ErrClosed, name)
	}
	for _, sv := range s.services {
		if sv.name == name {
			return fmt.Errorf("%w: %q", ErrDuplicate, name)
		}
	}
	sv := &service{name: name, run: run, st: ServiceStatus{Name: name, State: StatePending, Since: s.now()}}
	s.services = append(s.services, sv)
	if s.started {
		s.startLocked(sv)
	}
	return nil
}

// Run starts every service and returns when ctx is cancelled and every service has returned.
// It returns nil after such a clean shutdown; it is an error to call it twice.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("supervisor: Run called twice")
	}
	s.started = true
	s.ctx = ctx
	for _, sv := range s.services {
		s.startLocked(sv)
	}
	s.mu.Unlock()

	<-ctx.Done()

	// closed under the lock orders every wg.Add before this Wait.
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.log.Info("supervisor: stopping services")
	s.wg.Wait()
	s.log.Info("supervisor: all services stopped")
	return nil
}

// Status returns a snapshot of every service, in the order they were added.
func (s *Supervisor) Status() []ServiceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceStatus, 0, len(s.services))
	for _, sv := range s.services {
		out = append(out, sv.st)
	}
	return out
}

func (s *Supervisor) startLocked(sv *service) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(s.ctx, sv)
	}()
}

func (s *Supervisor) setState(sv *service, st State) {
	s.mu.Lock()
	sv.st.State = st
	sv.st.Since = s.now()
	s.mu.Unlock()
}

func (s *Supervisor) loop(ctx context.Context, sv *service) {
	log := s.log.With("service", sv.name)
	for {
		s.setState(sv, StateRunning)
		start := s.now()
		err := runOnce(ctx, sv.run)
		ran := s.now().Sub(start)

		if ctx.Err() != nil {
			// Whatever it returned, it returned because we are shutting down.
			s.setState(sv, StateStopped)
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				log.Warn("service stopped with an error", "err", err)
			}
			return
		}
		if err == nil {
			s.setState(sv, StateDone)
			log.Info("service finished")
			return
		}

		s.mu.Lock()
		if ran >= s.healthyAfter {
			sv.st.ConsecutiveFailures = 0
		}
		attempt := sv.st.ConsecutiveFailures
		sv.st.ConsecutiveFailures++
		sv.st.Restarts++
		sv.st.LastError = err.Error()
		sv.st.LastErrorAt = s.now()
		sv.st.State = StateRestarting
		sv.st.Since = sv.st.LastErrorAt
		var pe *PanicError
		isPanic := errors.As(err, &pe)
		if isPanic {
			sv.st.Panics++
		}
		s.mu.Unlock()

		delay := s.policy.Delay(attempt, nil)
		if isPanic {
			log.Error("service panicked; restarting", "panic", fmt.Sprint(pe.Value),
				"stack", string(pe.Stack), "ran", ran, "retry_in", delay)
		} else {
			log.Warn("service failed; restarting", "err", err, "ran", ran, "retry_in", delay)
		}
		if backoff.Sleep(ctx, delay) != nil {
			s.setState(sv, StateStopped)
			return
		}
	}
}

// runOnce calls run and turns a panic into a *PanicError, so one broken service cannot crash
// the process.
func runOnce(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return run(ctx)
}
