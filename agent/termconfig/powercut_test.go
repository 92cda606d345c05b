package termconfig

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

	"github.com/posagent/posagent/agent/store"
)

// powerCutEnv names the store directory of the helper process; its presence makes
// TestHelperApplyLoop run instead of skip.
const powerCutEnv = "TERMCONFIG_POWERCUT_DIR"

// TestPowerCut kills a process that is applying configurations as fast as it can, at random
// moments, and checks after each kill that the store holds exactly one complete document
// (never a mix of two) with its predecessor as previous. SIGKILL stops the process at any
// instruction, including in the middle of a bbolt commit.
func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	var last uint64
	const trials = 15
	for trial := range trials {
		delay := 5*time.Millisecond + time.Duration(rng.Int64N(int64(76*time.Millisecond)))
		killAfterReady(t, dir, delay)

		db, err := store.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(db, quiet)
		if err != nil {
			t.Fatalf("trial %d: reopen after kill: %v", trial, err)
		}
		v := s.Active().Version
		if v < last {
			t.Fatalf("trial %d: active version went back from %d to %d", trial, last, v)
		}
		if v > 0 {
			sameDoc(t, s.Active(), docFor(t, v))
		}
		prev, ok := s.Previous()
		switch {
		case v <= 1 && ok:
			t.Fatalf("trial %d: version %d active with a previous version %d", trial, v, prev.Version)
		case v > 1 && !ok:
			t.Fatalf("trial %d: version %d active without previous", trial, v)
		case v > 1:
			sameDoc(t, prev, docFor(t, v-1))
		}
		t.Logf("trial %d: killed after %v, version %d active", trial, delay, v)
		last = v
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if last == 0 {
		t.Fatal("the helper never committed a document, so nothing was tested")
	}
}

// killAfterReady starts the helper on dir, waits until it has opened the store, lets it apply
// documents for delay and kills it.
func killAfterReady(t *testing.T, dir string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperApplyLoop$")
	cmd.Env = append(os.Environ(), powerCutEnv+"="+dir)
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

// TestHelperApplyLoop is the process TestPowerCut kills: it applies docFor(v) for v = active+1,
// active+2, ... until killed.
func TestHelperApplyLoop(t *testing.T) {
	dir := os.Getenv(powerCutEnv)
	if dir == "" {
		t.Skip("helper process of TestPowerCut")
	}
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(db, quiet)
	if err != nil {
		t.Fatal(err)
	}
	v := s.Active().Version
	next := docFor(t, v+1)
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		t.Fatal(err)
	}
	for {
		v++
		if _, err := s.Apply(next); err != nil {
			t.Fatal(err)
		}
		next = docFor(t, v+1)
	}
}
