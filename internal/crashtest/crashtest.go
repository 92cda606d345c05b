// Package crashtest is for tests only: it re-executes the test binary on one helper test and
// kills it (SIGKILL, at any instruction, in the middle of a bbolt commit included) at a random
// moment, so that a test can check what a power cut leaves behind.
//
// The helper test skips unless Dir names its directory, opens its store there, calls Ready
// and then works until killed.
package crashtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Helper is a helper test of the test binary, run in a child process on a directory.
type Helper struct {
	Test string // the helper test's name, TestHelper…
	Env  string // the environment variable that gives the helper its directory
}

// Dir is the directory the helper process works on; "" when this is not the helper process,
// where the helper test skips.
func (h Helper) Dir() string { return os.Getenv(h.Env) }

// Ready tells the killing test that the helper has opened its store: from now on it may be
// killed.
func Ready(t testing.TB) {
	t.Helper()
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		t.Fatal(err)
	}
}

// Rand is a random source for the kill delays, its seed logged.
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0))
}

// KillAfterReady starts the helper on dir, waits until it is Ready, lets it work for delay
// and kills it. The test fails if the helper does not get ready or ends by itself.
func (h Helper) KillAfterReady(t testing.TB, dir string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+h.Test+"$")
	cmd.Env = append(os.Environ(), h.Env+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not get ready (%q, %v): %s", line, err, stderr.String())
	}
	time.Sleep(delay)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Exited() {
		t.Fatalf("helper ended by itself (%v) instead of being killed: %s", err, stderr.String())
	}
}
