package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/internal/syncio"
)

func newTest(t *testing.T, healthyAfter time.Duration) (*Supervisor, *syncio.Buffer) {
	t.Helper()
	buf := &syncio.Buffer{}
	s := New(Options{
		Backoff:      backoff.Policy{Base: time.Millisecond, Cap: 2 * time.Millisecond},
		HealthyAfter: healthyAfter,
		Logger:       slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return s, buf
}

// start runs s in the background; the returned func cancels it and waits for Run's result.
func start(t *testing.T, s *Supervisor) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func statusOf(t *testing.T, s *Supervisor, name string) ServiceStatus {
	t.Helper()
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no service %q in %+v", name, s.Status())
	return ServiceStatus{}
}

// flaky fails n times, then signals settled and runs until cancelled.
func flaky(n int, calls *atomic.Int32, settled chan<- struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		c := calls.Add(1)
		if int(c) <= n {
			return fmt.Errorf("boom %d", c)
		}
		close(settled)
		<-ctx.Done()
		return ctx.Err()
	}
}

func TestFailingServiceRestartsAndOthersKeepRunning(t *testing.T) {
	s, _ := newTest(t, time.Hour)
	var calls, steadyCalls atomic.Int32
	settled := make(chan struct{})
	steadyUp := make(chan struct{})
	if err := s.Add("flaky", flaky(3, &calls, settled)); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("steady", func(ctx context.Context) error {
		steadyCalls.Add(1)
		close(steadyUp)
		<-ctx.Done()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-settled
	<-steadyUp

	st := statusOf(t, s, "flaky")
	if st.State != StateRunning || st.Restarts != 3 || st.ConsecutiveFailures != 3 || st.Panics != 0 {
		t.Errorf("flaky status = %+v", st)
	}
	if st.LastError != "boom 3" || st.LastErrorAt.IsZero() {
		t.Errorf("flaky last error = %q at %v", st.LastError, st.LastErrorAt)
	}
	if st := statusOf(t, s, "steady"); st.State != StateRunning || st.Restarts != 0 {
		t.Errorf("steady status = %+v", st)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if steadyCalls.Load() != 1 {
		t.Errorf("steady ran %d times, want 1", steadyCalls.Load())
	}
	for _, st := range s.Status() {
		if st.State != StateStopped {
			t.Errorf("after shutdown %s is %s", st.Name, st.State)
		}
	}
}

func TestPanicIsRecoveredCountedAndLogged(t *testing.T) {
	s, logs := newTest(t, time.Hour)
	var calls atomic.Int32
	settled := make(chan struct{})
	if err := s.Add("panicky", func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			panic("broken invariant")
		}
		close(settled)
		<-ctx.Done()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-settled

	st := statusOf(t, s, "panicky")
	if st.Panics != 1 || st.Restarts != 1 || !strings.Contains(st.LastError, "panic") {
		t.Errorf("status = %+v", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "service panicked") || !strings.Contains(out, "goroutine") ||
		!strings.Contains(out, "supervisor_test.go") {
		t.Errorf("panic log lacks message or stack:\n%s", out)
	}
}

func TestServiceReturningNilIsNotRestarted(t *testing.T) {
	s, _ := newTest(t, time.Hour)
	var calls atomic.Int32
	finished := make(chan struct{})
	if err := s.Add("oneshot", func(context.Context) error {
		calls.Add(1)
		close(finished)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-finished
	// Run must keep going after its only service is done; it ends on cancel only.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("ran %d times, want 1", calls.Load())
	}
	if st := statusOf(t, s, "oneshot"); st.State != StateDone || st.Restarts != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestHealthyRunResetsBackoff(t *testing.T) {
	s, _ := newTest(t, time.Minute)
	// Each reading of the clock is an hour after the previous one, so every run looks long and
	// healthy: the failure count never builds up.
	var hours atomic.Int64
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return base.Add(time.Duration(hours.Add(1)) * time.Hour) }

	var calls atomic.Int32
	settled := make(chan struct{})
	if err := s.Add("svc", flaky(4, &calls, settled)); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-settled
	st := statusOf(t, s, "svc")
	if st.Restarts != 4 || st.ConsecutiveFailures != 1 {
		t.Errorf("status = %+v, want 4 restarts and 1 consecutive failure", st)
	}
	_ = stop()
}

func TestRunWaitsForEveryServiceToReturn(t *testing.T) {
	s, _ := newTest(t, time.Hour)
	var cleanedUp atomic.Bool
	up := make(chan struct{})
	release := make(chan struct{})
	if err := s.Add("slow-stop", func(ctx context.Context) error {
		close(up)
		<-ctx.Done()
		<-release // shutdown work that outlives the cancel
		cleanedUp.Store(true)
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-up
	result := make(chan error, 1)
	go func() { result <- stop() }()
	close(release)
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if !cleanedUp.Load() {
		t.Fatal("Run returned before the service finished its shutdown")
	}
}

func TestAddRules(t *testing.T) {
	s, _ := newTest(t, time.Hour)
	noop := func(ctx context.Context) error { <-ctx.Done(); return nil }
	if err := s.Add("a", noop); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("a", noop); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate Add = %v", err)
	}
	if err := s.Add("", noop); err == nil {
		t.Error("Add with empty name succeeded")
	}
	if st := statusOf(t, s, "a"); st.State != StatePending {
		t.Errorf("before Run state = %s", st.State)
	}

	stop := start(t, s)
	// Added while running: starts at once.
	late := make(chan struct{})
	if err := s.Add("late", func(ctx context.Context) error { close(late); <-ctx.Done(); return nil }); err != nil {
		t.Fatal(err)
	}
	<-late
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("after", noop); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after shutdown = %v", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestErrorAtShutdownIsNotARestart(t *testing.T) {
	s, _ := newTest(t, time.Hour)
	up := make(chan struct{})
	if err := s.Add("svc", func(ctx context.Context) error {
		close(up)
		<-ctx.Done()
		return errors.New("connection closed")
	}); err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	<-up
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, s, "svc"); st.State != StateStopped || st.Restarts != 0 {
		t.Errorf("status = %+v", st)
	}
}
