package slots

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

// logBuffer collects a Slots' or Launcher's log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func openTest(t *testing.T) (*Slots, *logBuffer) {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "slots"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return s, logs
}

// writeBinary writes a source file for Install and returns its path and hex SHA-256.
func writeBinary(t *testing.T, content string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "posagent-new")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return path, hex.EncodeToString(sum[:])
}

// show renders a state for comparison, Last by value.
func show(st State) string {
	last := "<nil>"
	if st.Last != nil {
		last = fmt.Sprintf("%+v", *st.Last)
	}
	st.Last = nil
	return fmt.Sprintf("%+v last=%s", st, last)
}

func mustState(t *testing.T, s *Slots) State {
	t.Helper()
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMissingStateIsFactory(t *testing.T) {
	s, _ := openTest(t)
	st := mustState(t, s)
	if st.Active != Factory || st.Trial != "" || st.Last != nil {
		t.Fatalf("state = %+v, want factory only", st)
	}
	if got := s.Inactive(); got != A {
		t.Fatalf("Inactive = %q, want a", got)
	}
	for _, name := range []string{A, B, "lock"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), name)); err != nil {
			t.Errorf("Open did not create %s: %v", name, err)
		}
	}
}

func TestTrialCommitted(t *testing.T) {
	s, _ := openTest(t)
	src, sum := writeBinary(t, "#!/bin/sh\necho 1.4.0\n")
	if err := s.Install(A, src); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path(A))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("slot binary mode %v, want 0755", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), A, tmpName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary binary left behind: %v", err)
	}
	if err := s.StartTrial(A, "1.4.0", "cmd-7", 0, 0); err != nil {
		t.Fatal(err)
	}
	st := mustState(t, s)
	want := State{Active: Factory, Trial: A, TrialVersion: "1.4.0", TrialSum: sum, Command: "cmd-7",
		MaxTries: DefaultMaxTries, DeadlineSec: int64(DefaultDeadline / time.Second)}
	if show(st) != show(want) {
		t.Fatalf("after StartTrial: %+v, want %+v", st, want)
	}
	s.now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	st = mustState(t, s)
	if st.Active != A || st.ActiveVersion != "1.4.0" || st.ActiveSum != sum || st.Trial != "" || st.Tries != 0 {
		t.Fatalf("after Commit: %+v", st)
	}
	wantLast := Outcome{Slot: A, Version: "1.4.0", Command: "cmd-7", Result: ResultCommitted, At: 1_800_000_000}
	if st.Last == nil || *st.Last != wantLast {
		t.Fatalf("Last = %+v, want %+v", st.Last, wantLast)
	}
	if got := s.Inactive(); got != B {
		t.Fatalf("Inactive after committing a = %q, want b", got)
	}
	// A second Open (the other process) sees the same.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if st2 := mustState(t, s2); show(st2) != show(st) {
		t.Fatalf("reopened: %+v, want %+v", st2, st)
	}
}

func TestInstallNeverTouchesActiveOrTrial(t *testing.T) {
	s, _ := openTest(t)
	srcA, _ := writeBinary(t, "#!/bin/sh\n# a\n")
	srcB, _ := writeBinary(t, "#!/bin/sh\n# b\n")
	if err := s.Install(A, srcA); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(A, "1.0.0", "c1", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(A, srcB); !errors.Is(err, ErrSlotInUse) {
		t.Fatalf("Install into the trial slot: %v, want ErrSlotInUse", err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(A, srcB); !errors.Is(err, ErrSlotInUse) {
		t.Fatalf("Install into the active slot: %v, want ErrSlotInUse", err)
	}
	got, err := os.ReadFile(s.Path(A))
	if err != nil || string(got) != "#!/bin/sh\n# a\n" {
		t.Fatalf("active binary changed: %q, %v", got, err)
	}
	if err := s.Install(B, srcB); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{Factory, "", "c", "../a"} {
		if err := s.Install(bad, srcB); !errors.Is(err, ErrBadSlot) {
			t.Errorf("Install(%q): %v, want ErrBadSlot", bad, err)
		}
	}
	if err := s.Install(B, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Install of a missing file: %v", err)
	}
}

func TestStartTrialRules(t *testing.T) {
	s, _ := openTest(t)
	if err := s.StartTrial(B, "2.0.0", "c1", 3, time.Minute); !errors.Is(err, ErrNoBinary) {
		t.Fatalf("StartTrial without a binary: %v, want ErrNoBinary", err)
	}
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Path(B), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(B, "2.0.0", "c1", 3, time.Minute); !errors.Is(err, ErrNoBinary) {
		t.Fatalf("StartTrial of a non-executable binary: %v, want ErrNoBinary", err)
	}
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(B, "2.0.0", "c1", 5, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, s); st.MaxTries != 5 || st.DeadlineSec != 2 {
		t.Fatalf("limits %d tries %ds, want 5 and 2 (rounded up)", st.MaxTries, st.DeadlineSec)
	}
	if err := s.StartTrial(A, "2.0.1", "c2", 3, time.Minute); !errors.Is(err, ErrTrialInProgress) {
		t.Fatalf("second trial: %v, want ErrTrialInProgress", err)
	}
	if err := s.StartTrial(Factory, "x", "c3", 3, time.Minute); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("trial of factory: %v, want ErrBadSlot", err)
	}
}

func TestRollbackAndLateCommit(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Commit(); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("Commit without a trial: %v", err)
	}
	if err := s.Rollback("x"); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("Rollback without a trial: %v", err)
	}
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(A, src); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(A, "1.1.0", "c1", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The launcher names the trial it judged: another command's trial is not its to end.
	if err := s.rollback(A, "c0", "stale"); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("rollback of another command's trial: %v", err)
	}
	if err := s.rollback(A, "c1", "health check deadline passed"); err != nil {
		t.Fatal(err)
	}
	// The agent's commit arriving after the launcher's rollback loses.
	if err := s.Commit(); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("Commit after rollback: %v, want ErrNotOnTrial", err)
	}
	st := mustState(t, s)
	if st.Active != Factory || st.Trial != "" || st.Last == nil || st.Last.Result != ResultRolledBack ||
		st.Last.Reason != "health check deadline passed" || st.Last.Slot != A || st.Last.Command != "c1" {
		t.Fatalf("after rollback: %+v last %+v", st, st.Last)
	}
	// A long reason is clipped, never a reason to fail the rollback.
	if err := s.StartTrial(A, "1.1.1", "c2", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(strings.Repeat("é", 2000)); err != nil {
		t.Fatal(err)
	}
	if r := mustState(t, s).Last.Reason; len(r) > maxText || !strings.HasPrefix(r, "éé") {
		t.Fatalf("reason of %d bytes", len(r))
	}
}

// Under the launcher only the trial boot itself may commit.
func TestCommitOnlyFromTheTrialBoot(t *testing.T) {
	s, _ := openTest(t)
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(B, "2.0.0", "c1", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvLauncher, s.Dir())
	t.Setenv(EnvSlot, Factory)
	t.Setenv(EnvTrial, "")
	if err := s.Commit(); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("Commit from the factory agent: %v, want ErrNotOnTrial", err)
	}
	t.Setenv(EnvSlot, B)
	if err := s.Commit(); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("Commit from slot b not started as a trial: %v, want ErrNotOnTrial", err)
	}
	if st := mustState(t, s); st.Trial != B {
		t.Fatalf("trial gone: %+v", st)
	}
	t.Setenv(EnvTrial, "1")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, s); st.Active != B {
		t.Fatalf("not committed: %+v", st)
	}
}

func TestBeginTryCountsDurably(t *testing.T) {
	s, _ := openTest(t)
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	if _, err := s.beginTry(B, "c1", ""); !errors.Is(err, ErrNotOnTrial) {
		t.Fatalf("beginTry without trial: %v", err)
	}
	if err := s.StartTrial(B, "3.0.0", "c1", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		st, err := s.beginTry(B, "c1", "exit status "+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if st.Tries != i {
			t.Fatalf("try %d counted as %d", i, st.Tries)
		}
	}
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, s2); st.Tries != 3 || st.TrialLast != "exit status 3" {
		t.Fatalf("reopened: tries %d last %q", st.Tries, st.TrialLast)
	}
}

// history makes three changes and returns the states after each.
func history(t *testing.T, s *Slots) []State {
	t.Helper()
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	var out []State
	if err := s.StartTrial(B, "2.0.0", "c1", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	out = append(out, mustState(t, s))
	if _, err := s.beginTry(B, "c1", ""); err != nil {
		t.Fatal(err)
	}
	out = append(out, mustState(t, s))
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	return append(out, mustState(t, s))
}

func TestDamagedStateFallsBackToPrevious(t *testing.T) {
	damage := map[string]func([]byte) []byte{
		"empty":     func([]byte) []byte { return nil },
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"bit flip":  func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-40] ^= 0x04; return c },
		"garbage":   func([]byte) []byte { return []byte("\x00\xff not cbor") },
		"oversized": func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, maxBootSize)...) },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			s, logs := openTest(t)
			states := history(t, s)
			boot := filepath.Join(s.Dir(), bootName)
			data, err := os.ReadFile(boot)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(boot, f(data), 0o644); err != nil {
				t.Fatal(err)
			}
			st := mustState(t, s)
			if show(st) != show(states[1]) {
				t.Fatalf("fallback state %+v, want the one before the last change %+v", st, states[1])
			}
			if !strings.Contains(logs.String(), "using the previous one") {
				t.Fatalf("fallback not logged: %s", logs)
			}
			// The next change starts from the fallback and repairs the file.
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := readState(boot); err != nil {
				t.Fatalf("boot.cbor not repaired: %v", err)
			}
			if st := mustState(t, s); st.Active != B || st.Trial != "" {
				t.Fatalf("after repair: %+v", st)
			}
		})
	}
}

func TestBothDamagedBootsFactory(t *testing.T) {
	s, logs := openTest(t)
	history(t, s)
	for _, name := range []string{bootName, prevName} {
		if err := os.WriteFile(filepath.Join(s.Dir(), name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := mustState(t, s)
	if st.Active != Factory || st.Trial != "" {
		t.Fatalf("state %+v, want factory", st)
	}
	if !strings.Contains(logs.String(), "booting factory") {
		t.Fatalf("not logged: %s", logs)
	}
	// Missing boot.cbor with a good previous copy is damage too, not a first boot.
	s2, _ := openTest(t)
	states := history(t, s2)
	if err := os.Remove(filepath.Join(s2.Dir(), bootName)); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, s2); show(st) != show(states[1]) {
		t.Fatalf("missing boot.cbor: %+v, want %+v", st, states[1])
	}
}

// writeRaw writes a boot.cbor whose inner state is the map m, with a correct checksum.
func writeRaw(t *testing.T, s *Slots, v uint, m map[string]any) {
	t.Helper()
	inner, err := tmsproto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(inner)
	data, err := tmsproto.Marshal(bootFile{V: v, State: inner, Sum: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), bootName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNewerFieldsAreIgnoredByAnOlderLauncher(t *testing.T) {
	s, logs := openTest(t)
	writeRaw(t, s, fileVersion, map[string]any{"active": "b", "activeVersion": "9.0.0", "future": []any{1, "x"}})
	st := mustState(t, s)
	if st.Active != B || st.ActiveVersion != "9.0.0" {
		t.Fatalf("state %+v", st)
	}
	if logs.String() != "" {
		t.Fatalf("unexpected recovery: %s", logs)
	}
	// A new format version, or a state that breaks the rules, is not read.
	for _, tc := range []struct {
		v uint
		m map[string]any
	}{
		{2, map[string]any{"active": "b"}},
		{1, map[string]any{"active": "c"}},
		{1, map[string]any{"active": "a", "trial": "a", "maxTries": 3, "deadlineSec": 1, "trialSum": strings.Repeat("0", 64)}},
		{1, map[string]any{"active": "a", "tries": 2}},
		{1, map[string]any{"active": "a", "trial": "b", "maxTries": 0, "deadlineSec": 1, "trialSum": strings.Repeat("0", 64)}},
		{1, map[string]any{"active": "a", "activeSum": "zz"}},
		{1, map[string]any{"active": 1}},
		{1, map[string]any{"active": "a", "tries": -1}},
		{1, map[string]any{"active": "a", "last": map[string]any{"slot": "a", "result": "maybe"}}},
	} {
		writeRaw(t, s, tc.v, tc.m)
		if st := mustState(t, s); st.Active != Factory {
			t.Errorf("v%d %v read as %+v, want it refused (factory)", tc.v, tc.m, st)
		}
	}
}

func TestCurrent(t *testing.T) {
	t.Setenv(EnvLauncher, "")
	t.Setenv(EnvSlot, "b")
	if slot, under := Current(); slot != Factory || under {
		t.Fatalf("without launcher: %q %v", slot, under)
	}
	if OnTrial() {
		t.Fatal("on trial without launcher")
	}
	t.Setenv(EnvLauncher, "/data/slots")
	if slot, under := Current(); slot != B || !under {
		t.Fatalf("under launcher in b: %q %v", slot, under)
	}
	t.Setenv(EnvSlot, "factory")
	t.Setenv(EnvTrial, "1")
	if slot, under := Current(); slot != Factory || !under || !OnTrial() || LauncherDir() != "/data/slots" {
		t.Fatalf("under launcher in factory: %q %v %v", slot, under, OnTrial())
	}
}

// TestHelperTries is a child process counting trial starts for TestLockAcrossProcesses.
func TestHelperTries(t *testing.T) {
	dir := os.Getenv("SLOTS_TEST_TRIES_DIR")
	if dir == "" {
		t.Skip("helper process")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if _, err := s.beginTry(B, "c1", "child"); err != nil {
			t.Fatal(err)
		}
	}
}

// Two processes incrementing the same counter lose no increment: the read-modify-write is
// under the file lock.
func TestLockAcrossProcesses(t *testing.T) {
	skipReexec(t)
	s, _ := openTest(t)
	src, _ := writeBinary(t, "#!/bin/sh\n")
	if err := s.Install(B, src); err != nil {
		t.Fatal(err)
	}
	if err := s.StartTrial(B, "2.0.0", "c1", 1000, time.Minute); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTries$")
	cmd.Env = append(os.Environ(), "SLOTS_TEST_TRIES_DIR="+s.Dir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 { // and two goroutines of this process
		wg.Go(func() {
			for range 40 {
				if _, err := s.beginTry(B, "c1", "parent"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out.String())
	}
	if st := mustState(t, s); st.Tries != 120 {
		t.Fatalf("tries = %d, want 120", st.Tries)
	}
}

func FuzzDecodeState(f *testing.F) {
	for _, st := range []State{
		{Active: Factory},
		{Active: A, ActiveVersion: "1.0.0", ActiveSum: strings.Repeat("ab", 32)},
		{Active: A, ActiveSum: strings.Repeat("ab", 32), Trial: B, TrialVersion: "1.1.0",
			TrialSum: strings.Repeat("cd", 32), Command: "c1", Tries: 2, MaxTries: 3, DeadlineSec: 300,
			TrialLast: "exit status 2", Last: &Outcome{Slot: A, Result: ResultCommitted, At: 1}},
	} {
		data, err := encodeState(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		if err := st.validate(); err != nil {
			t.Fatalf("accepted an invalid state %+v: %v", st, err)
		}
		again, err := encodeState(st)
		if err != nil {
			t.Fatal(err)
		}
		st2, err := decodeState(again)
		if err != nil || show(st2) != show(st) {
			t.Fatalf("round trip: %+v, %v; want %+v", st2, err, st)
		}
	})
}
