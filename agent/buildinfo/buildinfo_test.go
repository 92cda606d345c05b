package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestTarget(t *testing.T) {
	got := Target()
	want := runtime.GOOS + "/" + runtime.GOARCH
	if !strings.HasPrefix(got, want) {
		t.Fatalf("Target() = %q, want prefix %q", got, want)
	}
	if runtime.GOARCH != "arm" && got != want {
		t.Fatalf("Target() = %q, want %q", got, want)
	}
}

func TestStringCarriesStampedValues(t *testing.T) {
	oldV, oldC, oldD := Version, Commit, Date
	t.Cleanup(func() { Version, Commit, Date = oldV, oldC, oldD })
	Version, Commit, Date = "1.2.3", "abcdef123456", "2026-01-02T03:04:05Z"

	s := String()
	for _, part := range []string{"posagent 1.2.3", "commit abcdef123456", "built 2026-01-02T03:04:05Z", Target(), runtime.Version()} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, missing %q", s, part)
		}
	}
	if strings.Contains(s, "\n") {
		t.Errorf("String() spans lines: %q", s)
	}
}

func TestDefaultsMarkDeveloperBuild(t *testing.T) {
	oldC := Commit
	t.Cleanup(func() { Commit = oldC })
	Commit = "unknown"
	if Version != "dev" || Date != "unknown" {
		t.Skip("binary was stamped by -ldflags")
	}
	// Without a stamp the revision comes from the toolchain or stays "unknown"; it is never empty.
	if Revision() == "" {
		t.Fatal("Revision() is empty")
	}
}
