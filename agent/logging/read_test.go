package logging

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }

func line(i int) string {
	return fmt.Sprintf(`{"time":"%s","level":"INFO","msg":"m%d"}`, at(i).Format(time.RFC3339Nano), i)
}

// writeSet writes path.2, path.1 and path with three lines each, m0…m8 in time order, plus
// lines ReadRange must skip, and dates each file like the writer would have.
func writeSet(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.log")
	files := []struct {
		name  string
		lines []string
	}{
		{path + ".2", []string{line(0), "not json", line(1), line(2)}},
		{path + ".1", []string{line(3), `{"level":"INFO","time":"` + at(4).Format(time.RFC3339) + `","msg":"m4"}`, "{}", line(5)}},
		{path, []string{line(6), `{"time":"` + strings.Repeat("x", MaxLineLen) + `"}`, line(7), line(8)}},
	}
	for k, f := range files {
		if err := os.WriteFile(f.name, []byte(strings.Join(f.lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		last := at(3*k + 2)
		if err := os.Chtimes(f.name, last, last); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func collect(t *testing.T, path string, from, to time.Time) []string {
	t.Helper()
	var msgs []string
	err := ReadRange(path, from, to, func(l []byte) error {
		var m struct{ Msg string }
		if err := json.Unmarshal(l, &m); err != nil {
			return err
		}
		msgs = append(msgs, m.Msg)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestReadRangeOrderAndBounds(t *testing.T) {
	path := writeSet(t)
	all := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"}
	if got := collect(t, path, time.Time{}, time.Time{}); !slices.Equal(got, all) {
		t.Errorf("unbounded = %v", got)
	}
	// from is inclusive, to exclusive.
	if got := collect(t, path, at(2), at(6)); !slices.Equal(got, all[2:6]) {
		t.Errorf("[2,6) = %v", got)
	}
	if got := collect(t, path, at(4), time.Time{}); !slices.Equal(got, all[4:]) {
		t.Errorf("[4,∞) = %v", got)
	}
	if got := collect(t, path, time.Time{}, at(1)); !slices.Equal(got, all[:1]) {
		t.Errorf("(∞,1) = %v", got)
	}
	if got := collect(t, path, at(9), time.Time{}); len(got) != 0 {
		t.Errorf("after the end = %v", got)
	}
}

func TestReadRangeStopsOnCallbackError(t *testing.T) {
	path := writeSet(t)
	stop := errors.New("stop")
	n := 0
	err := ReadRange(path, time.Time{}, time.Time{}, func([]byte) error {
		n++
		if n == 4 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 4 {
		t.Errorf("err = %v after %d lines", err, n)
	}
}

func TestReadRangeMissingFile(t *testing.T) {
	called := false
	err := ReadRange(filepath.Join(t.TempDir(), "none.log"), time.Time{}, time.Time{}, func([]byte) error {
		called = true
		return nil
	})
	if err != nil || called {
		t.Errorf("missing file: err %v, called %v", err, called)
	}
}

// Rotation while a long upload reads must neither lose nor repeat lines.
func TestReadRangeWhileRotating(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	w, err := OpenRotating(path, 1000, 50)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 40 {
		if _, err := w.Write([]byte(line(i) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	err = w.ReadRange(time.Time{}, time.Time{}, func(l []byte) error {
		var i int
		if _, err := fmt.Sscanf(string(l[strings.Index(string(l), `"msg":"m`)+8:]), "%d", &i); err != nil {
			return err
		}
		got = append(got, i)
		// Each line read causes more logging, so files rotate under the reader.
		for k := range 3 {
			if _, err := w.Write([]byte(line(1000+3*i+k) + "\n")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, 40)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		t.Errorf("read %v, want 0…39 once each", got)
	}
}

func TestLineTime(t *testing.T) {
	ts, ok := LineTime([]byte(line(5)))
	if !ok || !ts.Equal(at(5)) {
		t.Errorf("fast path = %v, %v", ts, ok)
	}
	ts, ok = LineTime([]byte(`{"msg":"x","time":"2026-03-01T12:05:00+03:00"}`))
	if !ok || !ts.Equal(at(5).Add(-3*time.Hour)) {
		t.Errorf("fallback = %v, %v", ts, ok)
	}
	for _, bad := range []string{"", "{}", `{"time":"yesterday"}`, `{"time":"`, "garbage"} {
		if _, ok := LineTime([]byte(bad)); ok {
			t.Errorf("LineTime(%q) ok", bad)
		}
	}
}
