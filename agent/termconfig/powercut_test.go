package termconfig

import (
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/internal/crashtest"
)

// powerCut is the helper process TestPowerCut kills: $TERMCONFIG_POWERCUT_DIR names its store
// directory, and its presence makes TestHelperApplyLoop run instead of skip.
var powerCut = crashtest.Helper{Test: "TestHelperApplyLoop", Env: "TERMCONFIG_POWERCUT_DIR"}

// TestPowerCut kills a process that is applying configurations as fast as it can, at random
// moments, and checks after each kill that the store holds exactly one complete document
// (never a mix of two) with its predecessor as previous. SIGKILL stops the process at any
// instruction, including in the middle of a bbolt commit.
func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	rng := crashtest.Rand(t)

	var last uint64
	const trials = 15
	for trial := range trials {
		delay := 5*time.Millisecond + time.Duration(rng.Int64N(int64(76*time.Millisecond)))
		powerCut.KillAfterReady(t, dir, delay)

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

// TestHelperApplyLoop is the process TestPowerCut kills: it applies docFor(v) for v = active+1,
// active+2, ... until killed.
func TestHelperApplyLoop(t *testing.T) {
	dir := powerCut.Dir()
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
	crashtest.Ready(t)
	for {
		v++
		if _, err := s.Apply(next); err != nil {
			t.Fatal(err)
		}
		next = docFor(t, v+1)
	}
}
