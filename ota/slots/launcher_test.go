package slots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The launcher's children in these tests are this test binary, re-executed on
// TestHelperChild in a mode: each slot binary is a shell script that sets the mode and execs
// the test binary (same pid), so the launcher runs real processes from real slot files.
const (
	envMode = "SLOTS_TEST_MODE"
	envLog  = "SLOTS_TEST_LOG"
)

// event is one line a child wrote: its slot, mode, pid, whether it was a trial boot, and what.
type event struct {
	slot, mode string
	pid        int
	trial      bool
	what       string
}

func TestHelperChild(t *testing.T) {
	mode := os.Getenv(envMode)
	if mode == "" {
		t.Skip("helper process")
	}
	slot, _ := Current()
	logf := func(what string) {
		f, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			os.Exit(99)
		}
		fmt.Fprintf(f, "%s %s %d %v %s\n", slot, mode, os.Getpid(), OnTrial(), what)
		f.Close()
	}
	commit := func() {
		s, err := Open(LauncherDir())
		if err == nil {
			err = s.Commit()
		}
		if errors.Is(err, ErrNotOnTrial) {
			logf("commit: not on trial")
			return
		}
		if err != nil {
			logf("commit: " + err.Error())
			os.Exit(98)
		}
		logf("committed")
	}
	term := make(chan os.Signal, 1)
	serve := func() {
		<-term
		logf("term")
		os.Exit(0)
	}
	switch mode {
	case "hang-hard":
		signal.Ignore(syscall.SIGTERM)
	default:
		signal.Notify(term, syscall.SIGTERM)
	}
	logf("start")
	switch mode {
	case "serve":
		serve()
	case "crash":
		os.Exit(2)
	case "commit-restart": // a healthy agent: commits its trial, asks for a boot per the state
		if OnTrial() {
			commit()
			os.Exit(ExitRestart)
		}
		serve()
	case "commit-late": // commits while running, keeps running
		if OnTrial() {
			time.Sleep(300 * time.Millisecond)
			commit()
		}
		serve()
	case "commit-on-term": // too slow: tries to commit only when told to stop
		<-term
		commit()
		os.Exit(0)
	case "hang-hard": // never commits, ignores SIGTERM
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(97)
}

type launchWorld struct {
	t       *testing.T
	s       *Slots
	log     string
	factory string
	logs    *logBuffer
}

func newLaunchWorld(t *testing.T) *launchWorld {
	t.Helper()
	s, logs := openTest(t)
	w := &launchWorld{t: t, s: s, log: filepath.Join(t.TempDir(), "events"), logs: logs}
	w.factory = w.script("serve")
	return w
}

// script writes a binary running this test binary's helper in mode.
func (w *launchWorld) script(mode string) string {
	w.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.t.TempDir(), "posagent-"+mode)
	body := fmt.Sprintf("#!/bin/sh\n%s=%s exec %q \"$@\"\n", envMode, mode, exe)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// trial installs mode into slot and starts a trial of it.
func (w *launchWorld) trial(slot, mode, version string, maxTries int, deadline time.Duration) {
	w.t.Helper()
	if err := w.s.Install(slot, w.script(mode)); err != nil {
		w.t.Fatal(err)
	}
	if err := w.s.StartTrial(slot, version, "cmd-"+version, maxTries, deadline); err != nil {
		w.t.Fatal(err)
	}
}

func (w *launchWorld) launcher() *Launcher {
	return &Launcher{
		Slots: w.s, Factory: w.factory, Args: []string{"-test.run=^TestHelperChild$"},
		Env:        append(os.Environ(), envLog+"="+w.log),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Poll: 50 * time.Millisecond, KillGrace: 300 * time.Millisecond, StopGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(w.logs, nil)),
	}
}

// start runs a launcher until the returned stop is called, which waits for Run to return.
func (w *launchWorld) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l := w.launcher()
	go func() { done <- l.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				w.t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			w.t.Fatalf("launcher did not stop\n%s", w.logs)
		}
	}
	w.t.Cleanup(stop)
	return stop
}

func (w *launchWorld) events() []event {
	data, err := os.ReadFile(w.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		w.t.Fatal(err)
	}
	var out []event
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, " ", 5)
		if len(f) != 5 {
			continue
		}
		pid, _ := strconv.Atoi(f[2])
		out = append(out, event{slot: f[0], mode: f[1], pid: pid, trial: f[3] == "true", what: f[4]})
	}
	return out
}

// waitFor polls the children's events until cond holds (a bound against hanging, not a
// timing assertion).
func (w *launchWorld) waitFor(what string, cond func([]event) bool) []event {
	w.t.Helper()
	end := time.Now().Add(30 * time.Second)
	for {
		ev := w.events()
		if cond(ev) {
			return ev
		}
		if time.Now().After(end) {
			w.t.Fatalf("waiting for %s: events %+v\nlauncher log:\n%s", what, ev, w.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(ev []event, f func(event) bool) int {
	n := 0
	for _, e := range ev {
		if f(e) {
			n++
		}
	}
	return n
}

func started(slot string, trial bool) func([]event) bool {
	return func(ev []event) bool {
		return count(ev, func(e event) bool { return e.slot == slot && e.trial == trial && e.what == "start" }) > 0
	}
}

// gone reports whether pid no longer runs (exited, or a zombie waiting for its reaper).
func gone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for !gone(pid) {
		if time.Now().After(end) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLauncherRollsBackACrashingTrial(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	// The running agent is slot a, committed earlier.
	w.trial(A, "serve", "1.3.0", 3, time.Minute)
	if err := w.s.Commit(); err != nil {
		t.Fatal(err)
	}
	w.trial(B, "crash", "1.4.0", 3, time.Minute)
	stop := w.start()
	ev := w.waitFor("slot a after the rollback", started(A, false))
	if n := count(ev, func(e event) bool { return e.slot == B && e.trial && e.what == "start" }); n != 3 {
		t.Fatalf("slot b started %d times, want 3 (MaxTries): %+v", n, ev)
	}
	st := mustState(t, w.s)
	if st.Active != A || st.ActiveVersion != "1.3.0" || st.Trial != "" {
		t.Fatalf("state after rollback: %+v", st)
	}
	want := "slot b (1.4.0) did not pass its health check in 3 starts: last: exit status 2"
	if st.Last == nil || st.Last.Result != ResultRolledBack || st.Last.Reason != want || st.Last.Command != "cmd-1.4.0" {
		t.Fatalf("Last = %+v, want rolled back with %q", st.Last, want)
	}
	// Stopping the launcher stops a with SIGTERM.
	stop()
	ev = w.events()
	if count(ev, func(e event) bool { return e.slot == A && e.what == "term" }) != 1 {
		t.Fatalf("slot a did not get SIGTERM: %+v", ev)
	}
	if !strings.Contains(w.logs.String(), "rolled back") {
		t.Fatalf("rollback not logged:\n%s", w.logs)
	}
}

func TestLauncherRollsBackATrialMissingItsDeadline(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	// It ignores SIGTERM too: the launcher must escalate to SIGKILL.
	w.trial(B, "hang-hard", "1.5.0", 3, time.Second)
	w.start()
	ev := w.waitFor("factory after the rollback", started(Factory, false))
	var hung int
	for _, e := range ev {
		if e.slot == B && e.what == "start" {
			hung = e.pid
		}
	}
	if hung == 0 || count(ev, func(e event) bool { return e.slot == B }) != 1 {
		t.Fatalf("events %+v, want one start of b", ev)
	}
	waitGone(t, hung)
	st := mustState(t, w.s)
	if st.Active != Factory || st.Trial != "" || st.Last == nil || st.Last.Result != ResultRolledBack ||
		!strings.HasPrefix(st.Last.Reason, "health check deadline passed") {
		t.Fatalf("state %+v last %+v", st, st.Last)
	}
	if !strings.Contains(w.logs.String(), "did not stop, killing it") {
		t.Fatalf("no SIGKILL escalation logged:\n%s", w.logs)
	}
}

func TestLauncherRollbackWinsOverALateCommit(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(B, "commit-on-term", "1.6.0", 3, time.Second)
	w.start()
	ev := w.waitFor("the late commit", func(ev []event) bool {
		return count(ev, func(e event) bool { return strings.HasPrefix(e.what, "commit") }) > 0
	})
	if count(ev, func(e event) bool { return e.what == "commit: not on trial" }) != 1 {
		t.Fatalf("the late commit was not refused: %+v", ev)
	}
	w.waitFor("factory", started(Factory, false))
	if st := mustState(t, w.s); st.Active != Factory || st.Last.Result != ResultRolledBack {
		t.Fatalf("state %+v last %+v", st, st.Last)
	}
}

func TestLauncherCommitsAHealthyTrial(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(B, "commit-restart", "1.7.0", 3, time.Minute)
	stop := w.start()
	w.waitFor("b after its commit", started(B, false))
	st := mustState(t, w.s)
	if st.Active != B || st.ActiveVersion != "1.7.0" || st.Trial != "" || st.Last == nil ||
		st.Last.Result != ResultCommitted || st.Last.Command != "cmd-1.7.0" {
		t.Fatalf("state %+v last %+v", st, st.Last)
	}
	stop()
	// A later boot (the launcher started again) runs b, not on trial.
	stop = w.start()
	w.waitFor("b booted again", func(ev []event) bool {
		return count(ev, func(e event) bool { return e.slot == B && !e.trial && e.what == "start" }) == 2
	})
	stop()
	ev := w.events()
	if count(ev, func(e event) bool { return e.slot == Factory }) != 0 ||
		count(ev, func(e event) bool { return e.slot == B && e.trial && e.what == "start" }) != 1 {
		t.Fatalf("events %+v", ev)
	}
}

func TestLauncherFollowsACommitWhileRunning(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(B, "commit-late", "1.8.0", 3, time.Second)
	stop := w.start()
	w.waitFor("the commit", func(ev []event) bool {
		return count(ev, func(e event) bool { return e.what == "committed" }) == 1
	})
	// Past the deadline: a committed child is not judged any more.
	time.Sleep(1500 * time.Millisecond)
	stop()
	ev := w.events()
	if count(ev, func(e event) bool { return e.what == "start" }) != 1 ||
		count(ev, func(e event) bool { return e.slot == B && e.what == "term" }) != 1 {
		t.Fatalf("want one run of b ended by the launcher's SIGTERM: %+v", ev)
	}
	if st := mustState(t, w.s); st.Active != B || st.Last.Result != ResultCommitted {
		t.Fatalf("state %+v", st)
	}
}

func TestLauncherRestartsACrashingAgent(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.factory = w.script("crash")
	w.start()
	w.waitFor("restarts", func(ev []event) bool {
		return count(ev, func(e event) bool { return e.slot == Factory && e.what == "start" }) >= 4
	})
}

func TestLauncherBootsFactoryWhenTheActiveBinaryIsDamaged(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(A, "serve", "2.0.0", 3, time.Minute)
	if err := w.s.Commit(); err != nil {
		t.Fatal(err)
	}
	// Damage on the flash after the commit: same name, other bytes.
	if err := os.WriteFile(w.s.Path(A), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.start()
	w.waitFor("factory", started(Factory, false))
	if !strings.Contains(w.logs.String(), "active slot unusable") {
		t.Fatalf("not logged:\n%s", w.logs)
	}
}

func TestLauncherRollsBackATrialWhoseBinaryChanged(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(B, "serve", "2.1.0", 3, time.Minute)
	if err := os.WriteFile(w.s.Path(B), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.start()
	w.waitFor("factory", started(Factory, false))
	st := mustState(t, w.s)
	if st.Trial != "" || st.Last == nil || !strings.Contains(st.Last.Reason, "binary changed") {
		t.Fatalf("state %+v last %+v", st, st.Last)
	}
	if count(w.events(), func(e event) bool { return e.slot == B }) != 0 {
		t.Fatal("a changed trial binary was started")
	}
}

// A trial interrupted by a power cut (the launcher died after counting the start) continues
// with the tries left, and the reason says the last start was interrupted.
func TestLauncherCountsInterruptedTries(t *testing.T) {
	skipReexec(t)
	t.Parallel()
	w := newLaunchWorld(t)
	w.trial(B, "crash", "2.2.0", 2, time.Minute)
	for range 2 {
		if _, err := w.s.beginTry(B, "cmd-2.2.0", ""); err != nil {
			t.Fatal(err)
		}
	}
	w.start()
	w.waitFor("factory", started(Factory, false))
	st := mustState(t, w.s)
	want := "slot b (2.2.0) did not pass its health check in 2 starts: last: start interrupted (power cut or launcher restart)"
	if st.Last == nil || st.Last.Reason != want {
		t.Fatalf("Last %+v, want reason %q", st.Last, want)
	}
	if count(w.events(), func(e event) bool { return e.slot == B }) != 0 {
		t.Fatal("b started beyond its tries")
	}
}

// skipReexec skips tests that start the test binary again as a child: -short runs (the
// qemu-user ones) cannot execute a foreign binary from inside the emulated one.
func skipReexec(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("re-executes the test binary; skipped with -short")
	}
}
