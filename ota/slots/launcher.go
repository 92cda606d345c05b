package slots

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/posagent/posagent/agent/backoff"
)

// Launcher starts the agent from the slot the boot state names and judges trial boots. It is
// started by the service manager from the factory binary's fixed path, and it is the part that
// must not fail: whatever it cannot read or write, it still starts something, at worst its own
// binary (Factory).
type Launcher struct {
	Slots   *Slots
	Factory string   // the launcher's own binary (os.Executable), run when Active is "factory"
	Args    []string // the child's arguments, e.g. run --config F
	Env     []string // the child's environment before the POSAGENT_ variables; nil = os.Environ()

	Stdin          io.Reader // nil = os.Stdin
	Stdout, Stderr io.Writer // nil = os.Stdout, os.Stderr

	MinBackoff  time.Duration // first restart delay after a crash; default 1 s
	MaxBackoff  time.Duration // default 30 s
	StableAfter time.Duration // a child up this long resets the backoff; default 60 s
	Poll        time.Duration // how often a trial's state is read; default (and at most) 1 s
	KillGrace   time.Duration // SIGTERM to SIGKILL for a child being stopped; default 10 s
	StopGrace   time.Duration // the same when the launcher itself stops; default 60 s

	Logger *slog.Logger
}

// child is one start of a binary.
type child struct {
	slot    string // the slot it runs from
	trial   bool   // started as a trial boot
	command string // the trial's command
	version string
	cmd     *exec.Cmd
	done    chan error
	started time.Time
	// deadline of a trial boot's commit
	deadline time.Time
	// stopped by the launcher (trial decided), to be replaced at once
	replaced bool
}

func (l *Launcher) defaults() {
	if l.MinBackoff <= 0 {
		l.MinBackoff = time.Second
	}
	if l.MaxBackoff <= 0 {
		l.MaxBackoff = 30 * time.Second
	}
	if l.StableAfter <= 0 {
		l.StableAfter = 60 * time.Second
	}
	if l.Poll <= 0 || l.Poll > time.Second {
		l.Poll = time.Second
	}
	if l.KillGrace <= 0 {
		l.KillGrace = 10 * time.Second
	}
	if l.StopGrace <= 0 {
		l.StopGrace = 60 * time.Second
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
}

// Run starts children until ctx ends; then the running child gets SIGTERM (SIGKILL after
// StopGrace) and Run returns nil once it is gone. An error means nothing could be started at
// all (no factory binary).
func (l *Launcher) Run(ctx context.Context) error {
	l.defaults()
	if l.Slots == nil || l.Factory == "" {
		return errors.New("slots: launcher needs Slots and Factory")
	}
	log := l.Logger
	crashes := 0 // consecutive failed runs outside a trial, for the backoff
	// How the last start of the current trial ended, known only to this launcher process;
	// after a launcher restart (a power cut) it is unknown.
	var lastTrial, lastWhy string
	for ctx.Err() == nil {
		st, err := l.Slots.State()
		if err != nil {
			log.Error("launcher: boot state", "err", err)
		}
		if st.Trial != "" && st.Trial+"\x00"+st.Command != lastTrial {
			lastTrial, lastWhy = st.Trial+"\x00"+st.Command, ""
		}
		var c *child
		if st.Trial != "" {
			c, err = l.startTrial(st, lastWhy)
			if err != nil {
				if errors.Is(err, errJudged) {
					continue
				}
				lastWhy = err.Error()
				continue
			}
		}
		if c == nil {
			c, err = l.startActive(st)
			if err != nil {
				log.Error("launcher: cannot start the agent", "err", err)
				if err := backoff.Sleep(ctx, l.delay(crashes)); err != nil {
					return nil
				}
				crashes++
				continue
			}
		}
		exit, stopped := l.watch(ctx, c)
		if stopped {
			return nil
		}
		code := exitCode(exit)
		up := time.Since(c.started)
		log.Info("launcher: agent exited", "slot", c.slot, "trial", c.trial, "status", describe(exit),
			"uptime", up.Round(time.Millisecond))
		if c.trial {
			// Still on this trial (not committed, not rolled back): the boot failed unless it
			// asked for a restart, which is still a try used.
			now, _ := l.Slots.State()
			if now.Trial == c.slot && now.Command == c.command {
				lastWhy = describe(exit)
				if code != 0 && code != ExitRestart {
					if err := backoff.Sleep(ctx, l.delay(now.Tries-1)); err != nil {
						return nil
					}
				}
				continue
			}
		}
		if up >= l.StableAfter {
			crashes = 0
		}
		if code == ExitRestart || c.replaced {
			continue
		}
		if err := backoff.Sleep(ctx, l.delay(crashes)); err != nil {
			return nil
		}
		crashes++
	}
	return nil
}

// errJudged: the trial was decided (rolled back) instead of started; look at the state again.
var errJudged = errors.New("trial judged")

// startTrial starts the trial slot after counting the try durably. It returns (nil, nil) when
// the trial cannot be counted (the state cannot be written): the active slot runs instead, as
// a trial boot that is not counted could be repeated forever.
func (l *Launcher) startTrial(st State, lastWhy string) (*child, error) {
	log := l.Logger
	if st.Tries >= st.MaxTries {
		last := lastWhy
		if last == "" {
			last = "start interrupted (power cut or launcher restart)"
		}
		reason := fmt.Sprintf("slot %s (%s) did not pass its health check in %d starts: last: %s",
			st.Trial, st.TrialVersion, st.Tries, last)
		return nil, l.judge(st, reason)
	}
	path := l.Slots.Path(st.Trial)
	if sum, err := fileSum(path); err != nil || sum != st.TrialSum {
		if err == nil {
			err = errors.New("binary changed since the trial started")
		}
		return nil, l.judge(st, fmt.Sprintf("slot %s (%s) cannot be started: %v", st.Trial, st.TrialVersion, err))
	}
	previous := lastWhy
	if previous == "" && st.Tries > 0 {
		previous = "start interrupted (power cut or launcher restart)"
	}
	counted, err := l.Slots.beginTry(st.Trial, st.Command, previous)
	if err != nil {
		if errors.Is(err, ErrNotOnTrial) {
			return nil, errJudged // the agent decided meanwhile
		}
		log.Error("launcher: cannot count the trial start; starting the active slot", "slot", st.Trial, "err", err)
		return nil, nil
	}
	c, err := l.start(path, st.Trial, true)
	if err != nil {
		log.Error("launcher: trial start failed", "slot", st.Trial, "version", st.TrialVersion, "err", err)
		return nil, fmt.Errorf("start: %w", err)
	}
	c.command, c.version = st.Command, st.TrialVersion
	c.deadline = c.started.Add(time.Duration(counted.DeadlineSec) * time.Second)
	log.Info("launcher: started trial", "slot", st.Trial, "version", st.TrialVersion, "try", counted.Tries,
		"of", counted.MaxTries, "pid", c.cmd.Process.Pid, "deadline", time.Duration(st.DeadlineSec)*time.Second)
	return c, nil
}

// judge rolls the trial back for reason. If that cannot be written, it says so and lets the
// caller start the active slot.
func (l *Launcher) judge(st State, reason string) error {
	err := l.Slots.rollback(st.Trial, st.Command, reason)
	switch {
	case err == nil:
		l.Logger.Warn("launcher: rolled back", "slot", st.Trial, "version", st.TrialVersion, "reason", reason)
		return errJudged
	case errors.Is(err, ErrNotOnTrial):
		return errJudged
	default:
		l.Logger.Error("launcher: rollback not written; starting the active slot", "reason", reason, "err", err)
		return nil
	}
}

// startActive starts the active slot, or factory if the active slot's binary is unusable.
func (l *Launcher) startActive(st State) (*child, error) {
	log := l.Logger
	if st.Active == A || st.Active == B {
		path := l.Slots.Path(st.Active)
		sum, err := fileSum(path)
		if err == nil && st.ActiveSum != "" && sum != st.ActiveSum {
			err = errors.New("binary does not match its recorded SHA-256")
		}
		if err == nil {
			c, err := l.start(path, st.Active, false)
			if err == nil {
				log.Info("launcher: started", "slot", st.Active, "version", st.ActiveVersion, "pid", c.cmd.Process.Pid)
				return c, nil
			}
		}
		log.Error("launcher: active slot unusable, starting factory", "slot", st.Active, "err", err)
	}
	c, err := l.start(l.Factory, Factory, false)
	if err != nil {
		return nil, err
	}
	log.Info("launcher: started", "slot", Factory, "pid", c.cmd.Process.Pid)
	return c, nil
}

func (l *Launcher) start(path, slot string, trial bool) (*child, error) {
	cmd := exec.Command(path, l.Args...)
	env := l.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = make([]string, 0, len(env)+3)
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvLauncher+"=") && !strings.HasPrefix(kv, EnvSlot+"=") &&
			!strings.HasPrefix(kv, EnvTrial+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, EnvLauncher+"="+l.Slots.Dir(), EnvSlot+"="+slot)
	if trial {
		cmd.Env = append(cmd.Env, EnvTrial+"=1")
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = l.Stdin, l.Stdout, l.Stderr
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{slot: slot, trial: trial, cmd: cmd, done: make(chan error, 1), started: time.Now()}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// watch waits for the child to exit. For a trial it reads the state every Poll: committed →
// an ordinary run from then on; not committed by the deadline → rolled back (durably first, so
// that a late Commit loses) and stopped; rolled back by the agent → stopped. ctx ending stops
// the child and reports stopped.
func (l *Launcher) watch(ctx context.Context, c *child) (exit error, stopped bool) {
	var tick <-chan time.Time
	if c.trial {
		t := time.NewTicker(l.Poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-c.done:
			return err, ctx.Err() != nil
		case <-ctx.Done():
			l.Logger.Info("launcher: stopping", "slot", c.slot, "pid", c.cmd.Process.Pid)
			return l.stop(c, l.StopGrace), true
		case <-tick:
			st, err := l.Slots.State()
			if err != nil {
				continue // judge on a state read properly only
			}
			if st.Trial == c.slot && st.Command == c.command {
				if time.Now().Before(c.deadline) {
					continue
				}
				reason := fmt.Sprintf("health check deadline passed: slot %s (%s) not committed within %ds",
					c.slot, c.version, st.DeadlineSec)
				if err := l.Slots.rollback(c.slot, c.command, reason); err != nil {
					if !errors.Is(err, ErrNotOnTrial) {
						l.Logger.Error("launcher: rollback not written", "reason", reason, "err", err)
					}
					continue // committed meanwhile, or retried at the next tick
				}
				l.Logger.Warn("launcher: rolled back", "slot", c.slot, "version", c.version, "reason", reason)
				c.replaced = true
				return l.stop(c, l.KillGrace), false
			}
			tick = nil
			if st.Active == c.slot {
				l.Logger.Info("launcher: trial committed", "slot", c.slot, "version", c.version)
				c.trial = false
				continue
			}
			l.Logger.Warn("launcher: trial rolled back by the agent; stopping it", "slot", c.slot)
			c.replaced = true
			return l.stop(c, l.KillGrace), false
		}
	}
}

// stop sends SIGTERM to the child, waits up to grace, then SIGKILLs its process group.
func (l *Launcher) stop(c *child, grace time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-c.done:
		return err
	case <-t.C:
	}
	l.Logger.Warn("launcher: child did not stop, killing it", "slot", c.slot, "pid", c.cmd.Process.Pid, "grace", grace)
	killGroup(c.cmd.Process)
	return <-c.done
}

func (l *Launcher) delay(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	return backoff.Policy{Base: l.MinBackoff, Cap: l.MaxBackoff}.Ceiling(attempt)
}

// exitCode is the child's exit code, -1 when a signal ended it or it could not be waited for.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func describe(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
