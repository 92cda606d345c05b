package slots

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/crashtest"
)

var cutHelper = crashtest.Helper{Test: "TestHelperSlotChanges", Env: "POSAGENT_SLOTS_CRASH_DIR"}

// selfChecked makes a binary's content that proves its own completeness: random bytes
// followed by their SHA-256.
func selfChecked(r *rand.Rand) []byte {
	b := make([]byte, 16<<10+r.IntN(240<<10))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "#!/bin/sh\nexit 0\n")
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// checkBinary fails unless path is a complete self-checked executable whose SHA-256 is sum.
func checkBinary(t *testing.T, what, path, sum string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(b) < sha256.Size {
		t.Fatalf("%s: %d bytes", what, len(b))
	}
	body, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], trailer) {
		t.Fatalf("%s: incomplete binary (%d bytes)", what, len(b))
	}
	if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != sum {
		t.Fatalf("%s: SHA-256 is not the one recorded in the state", what)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o111 != 0o111 {
		t.Fatalf("%s: not executable: %v %v", what, fi.Mode(), err)
	}
}

// TestHelperSlotChanges is the child process: random installs, trials, tries, commits and
// rollbacks, as the agent and the launcher make them, until killed.
func TestHelperSlotChanges(t *testing.T) {
	dir := cutHelper.Dir()
	if dir == "" {
		t.Skip("crash helper; run by TestStateSurvivesKills")
	}
	s, err := Open(filepath.Join(dir, "slots"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	crashtest.Ready(t)
	expect := func(err error, allowed ...error) {
		t.Helper()
		if err == nil {
			return
		}
		for _, a := range allowed {
			if errors.Is(err, a) {
				return
			}
		}
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		st, err := s.State()
		if err != nil {
			t.Fatal(err)
		}
		slot := []string{A, B}[r.IntN(2)]
		switch r.IntN(6) {
		case 0, 1:
			src := filepath.Join(dir, "src", strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(i))
			if err := os.WriteFile(src, selfChecked(r), 0o644); err != nil {
				t.Fatal(err)
			}
			expect(s.Install(slot, src), ErrSlotInUse)
			_ = os.Remove(src)
		case 2:
			v := fmt.Sprintf("1.%d.%d", os.Getpid()%100, i)
			expect(s.StartTrial(slot, v, "cmd-"+v, 3, time.Minute), ErrTrialInProgress, ErrSlotInUse, ErrNoBinary)
		case 3:
			_, err := s.beginTry(st.Trial, st.Command, "exit status 2")
			expect(err, ErrNotOnTrial)
		case 4:
			expect(s.Commit(), ErrNotOnTrial)
		case 5:
			expect(s.Rollback("health check failed"), ErrNotOnTrial)
		}
	}
}

// Killed at any instruction of any state change, the slots directory always gives a state
// that loads from boot.cbor itself (no fallback needed), names a complete runnable binary for
// the active slot and the trial, and accepts the next change.
func TestStateSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	trials := 30
	if os.Getenv("POSAGENT_LONG") == "1" {
		trials = 500
	}
	rnd := crashtest.Rand(t)
	dir := t.TempDir()
	slotsDir := filepath.Join(dir, "slots")
	seen := map[string]int{}
	for trial := range trials {
		cutHelper.KillAfterReady(t, dir, time.Duration(rnd.IntN(60))*time.Millisecond)
		for _, name := range []string{bootName, prevName} {
			if _, _, err := readState(filepath.Join(slotsDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("trial %d: %s: %v", trial, name, err)
			}
		}
		s, err := Open(slotsDir)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		logs := &logBuffer{}
		s.Logger = slog.New(slog.NewTextHandler(logs, nil))
		st, err := s.State()
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if logs.String() != "" {
			t.Fatalf("trial %d: state needed a fallback: %s", trial, logs)
		}
		if st.Active != Factory {
			checkBinary(t, fmt.Sprintf("trial %d: active slot %s", trial, st.Active), s.Path(st.Active), st.ActiveSum)
		}
		if st.Trial != "" {
			checkBinary(t, fmt.Sprintf("trial %d: trial slot %s", trial, st.Trial), s.Path(st.Trial), st.TrialSum)
		}
		entries, _ := os.ReadDir(slotsDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Fatalf("trial %d: Open left %s", trial, e.Name())
			}
		}
		seen["active "+st.Active]++
		if st.Trial != "" {
			seen["trial"]++
		}
		if st.Last != nil {
			seen[st.Last.Result]++
		}
	}
	t.Logf("states seen after the kills: %v", seen)
}
