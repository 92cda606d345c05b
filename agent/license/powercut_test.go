package license

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/crashtest"
)

// powerCut is the helper process TestPowerCut kills: $LICENSE_POWERCUT_DIR names its store
// directory, and its presence makes TestHelperInstallLoop run instead of skip.
var powerCut = crashtest.Helper{Test: "TestHelperInstallLoop", Env: "LICENSE_POWERCUT_DIR"}

// numbered is the n-th licence of the power-cut sequence; signing is deterministic, so the
// helper and the test make the same bytes.
func numbered(t testing.TB, n int) []byte {
	return sign(t, relKey, testKid, lic(fmt.Sprintf("L-%06d", n), func(l *License) {
		l.Issued += int64(n)
	}))
}

// TestPowerCut kills (SIGKILL, at any instruction, a bbolt commit included) a process that
// installs licence after licence, at random moments, and checks after each kill that the
// store holds exactly one complete licence that verifies — the last one installed or the one
// being installed — never a torn one, never none, never an older one.
func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	// Licence 0 is installed before the helper first runs, so "none" is always a failure.
	c := &clock{t: t0}
	db := openDB(t, dir)
	if _, err := openStore(t, db, c, defaultKeys()).Install(t.Context(), numbered(t, 0)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	rng := crashtest.Rand(t)
	last := 0
	for trial := range 15 {
		delay := 2*time.Millisecond + time.Duration(rng.Int64N(int64(60*time.Millisecond)))
		powerCut.KillAfterReady(t, dir, delay)

		db := openDB(t, dir)
		if err := db.View(func(tx *boltTx) error { return firstErr(tx.Check()) }); err != nil {
			t.Fatalf("trial %d: database inconsistent: %v", trial, err)
		}
		s := openStore(t, db, c, defaultKeys())
		if st := s.Status(); st.State != StateValid {
			t.Fatalf("trial %d: licence state %+v after the kill", trial, st)
		}
		cur, _ := s.Current()
		var n int
		if _, err := fmt.Sscanf(cur.ID, "L-%06d", &n); err != nil {
			t.Fatalf("trial %d: current id %q", trial, cur.ID)
		}
		if n < last {
			t.Fatalf("trial %d: licence went back from %d to %d", trial, last, n)
		}
		if !bytes.Equal(s.cur.Load().raw, numbered(t, n)) {
			t.Fatalf("trial %d: stored bytes of licence %d differ from what was installed", trial, n)
		}
		t.Logf("trial %d: killed after %v, licence %d installed", trial, delay, n)
		last = n
		db.Close()
	}
	if last == 0 {
		t.Fatal("the helper never installed a licence, so nothing was tested")
	}
}

func firstErr(errs <-chan error) error {
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
	}
	return first
}

// TestHelperInstallLoop is the process TestPowerCut kills: it installs numbered(n+1),
// numbered(n+2), … after the installed numbered(n) until killed.
func TestHelperInstallLoop(t *testing.T) {
	dir := powerCut.Dir()
	if dir == "" {
		t.Skip("helper process of TestPowerCut")
	}
	db := openDB(t, dir)
	s := openStore(t, db, &clock{t: t0}, defaultKeys())
	cur, ok := s.Current()
	if !ok {
		t.Fatal("no licence installed")
	}
	var n int
	if _, err := fmt.Sscanf(cur.ID, "L-%06d", &n); err != nil {
		t.Fatal(err)
	}
	next := numbered(t, n+1)
	crashtest.Ready(t)
	for {
		n++
		if _, err := s.Install(t.Context(), next); err != nil {
			t.Fatal(err)
		}
		next = numbered(t, n+1)
	}
}
