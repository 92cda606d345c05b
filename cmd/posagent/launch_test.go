package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posagent/posagent/ota/slots"
)

// The launcher process is this test binary on TestHelperLauncher running `posagent launch`;
// its factory binary is therefore this test binary too, and the agent arguments make the
// child run TestHelperLaunchedAgent.
const (
	envLaunchSlots = "POSAGENT_LAUNCH_TEST_SLOTS"
	envLaunchLog   = "POSAGENT_LAUNCH_TEST_LOG"
)

func TestHelperLauncher(t *testing.T) {
	dir := os.Getenv(envLaunchSlots)
	if dir == "" {
		t.Skip("helper process")
	}
	os.Exit(run([]string{"launch", "--slots", dir, "--", "-test.run=^TestHelperLaunchedAgent$"}, os.Stdout, os.Stderr))
}

// TestHelperLaunchedAgent stands for the agent: it says where it runs and serves until SIGTERM.
func TestHelperLaunchedAgent(t *testing.T) {
	logPath := os.Getenv(envLaunchLog)
	if logPath == "" || os.Getenv(slots.EnvLauncher) == "" {
		t.Skip("helper process")
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	slot, _ := slots.Current()
	appendLine(logPath, fmt.Sprintf("start %d %s", os.Getpid(), slot))
	<-term
	appendLine(logPath, "term")
	os.Exit(0)
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		os.Exit(99)
	}
	fmt.Fprintln(f, line)
	f.Close()
}

type launched struct {
	cmd      *exec.Cmd
	log      string
	stderr   *bytes.Buffer
	childPid int
}

// startLauncher runs `posagent launch` in a process and waits until its agent runs.
func startLauncher(t *testing.T) *launched {
	t.Helper()
	dir := t.TempDir()
	l := &launched{log: filepath.Join(dir, "events"), stderr: &bytes.Buffer{}}
	l.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperLauncher$")
	l.cmd.Env = append(os.Environ(), envLaunchSlots+"="+filepath.Join(dir, "slots"), envLaunchLog+"="+l.log)
	l.cmd.Stderr = l.stderr
	// An agent outliving its launcher would hold the stderr pipe open: do not wait for it.
	l.cmd.WaitDelay = 5 * time.Second
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.cmd.ProcessState == nil {
			_ = l.cmd.Process.Kill()
			_ = l.cmd.Wait()
		}
		// After a failure, leave no agent behind.
		if l.childPid != 0 && running(l.childPid) {
			_ = syscall.Kill(l.childPid, syscall.SIGKILL)
		}
	})
	end := time.Now().Add(30 * time.Second)
	for l.childPid == 0 {
		data, _ := os.ReadFile(l.log)
		if f := strings.Fields(string(data)); len(f) >= 3 && f[0] == "start" {
			if f[2] != slots.Factory {
				t.Fatalf("agent started from slot %q, want factory", f[2])
			}
			l.childPid, _ = strconv.Atoi(f[1])
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the agent did not start: %s", l.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l
}

// running reports whether pid runs (a zombie waiting for its reaper does not).
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func waitNotRunning(t *testing.T, pid int) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for running(pid) {
		if time.Now().After(end) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLaunchForwardsSIGTERM(t *testing.T) {
	skipReexec(t)
	l := startLauncher(t)
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("launcher exit: %v\n%s", err, l.stderr)
	}
	data, err := os.ReadFile(l.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(data), "term\n") {
		t.Fatalf("the agent did not get SIGTERM before the launcher ended: %q", data)
	}
	waitNotRunning(t, l.childPid)
}

func TestLaunchKilledTakesTheAgentDown(t *testing.T) {
	skipReexec(t)
	l := startLauncher(t)
	if err := l.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = l.cmd.Wait()
	// Pdeathsig: the kernel kills the agent with its launcher, so a restarted launcher never
	// finds a second agent running.
	waitNotRunning(t, l.childPid)
}

func TestLaunchArguments(t *testing.T) {
	t.Setenv("POSAGENT_SLOTS", "")
	var stderr bytes.Buffer
	if code := run([]string{"launch", "--", "run"}, &stderr, &stderr); code != 2 || !strings.Contains(stderr.String(), "--slots") {
		t.Fatalf("without --slots: %d %s", code, &stderr)
	}
	stderr.Reset()
	t.Setenv("POSAGENT_SLOTS", t.TempDir())
	if code := run([]string{"launch"}, &stderr, &stderr); code != 2 || !strings.Contains(stderr.String(), "no agent arguments") {
		t.Fatalf("without agent arguments: %d %s", code, &stderr)
	}
	stderr.Reset()
	if code := run([]string{"launch", "-h"}, &stderr, &stderr); code != 0 || !strings.Contains(stderr.String(), "POSAGENT_SLOTS") {
		t.Fatalf("-h: %d %s", code, &stderr)
	}
	stderr.Reset()
	if code := run([]string{"launch", "--max-backoff", "10ms", "--", "run"}, &stderr, &stderr); code != 2 {
		t.Fatalf("tiny --max-backoff: %d %s", code, &stderr)
	}
}

// Under the launcher a restart request ends the process with ExitRestart, so that the launcher
// boots per the slot state; it must not exec itself in place.
func TestRestartUnderTheLauncher(t *testing.T) {
	t.Setenv(slots.EnvLauncher, t.TempDir())
	t.Setenv(slots.EnvSlot, slots.B)
	var stderr bytes.Buffer
	if code := restart(&stderr); code != slots.ExitRestart {
		t.Fatalf("restart = %d (%s), want %d", code, &stderr, slots.ExitRestart)
	}
	if stderr.Len() != 0 {
		t.Fatalf("unexpected output %q", &stderr)
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
