package component

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// script writes an executable POSIX sh script into a temporary folder.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "install hook.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInstallPassesPlaceholdersAsSingleArguments(t *testing.T) {
	out := filepath.Join(t.TempDir(), "args")
	prog := script(t, `for a in "$@"; do printf '<%s>\n' "$a"; done > "$OUT"`)
	h := Hook{Argv: []string{prog, "--file={file}", "{name}@{version}", "{file}", "plain"}, Env: []string{"OUT=" + out}}
	file := "/data/ota/my firmware 'v2'.bin"
	if err := h.Install(context.Background(), file, "sp-fw", "1.4.0"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "<--file=" + file + ">\n<sp-fw@1.4.0>\n<" + file + ">\n<plain>\n"
	if string(got) != want {
		t.Fatalf("installer saw\n%s\nwant\n%s", got, want)
	}
}

// A value containing a placeholder is not expanded a second time.
func TestCommandReplacesInOnePass(t *testing.T) {
	h := Hook{Argv: []string{"/bin/x", "{file}", "{name}"}}
	argv, err := h.Command("/tmp/{name}.bin", "fw", "1")
	if err != nil {
		t.Fatal(err)
	}
	if argv[1] != "/tmp/{name}.bin" || argv[2] != "fw" {
		t.Fatalf("argv %q", argv)
	}
}

func TestInstallFailureCarriesExitCodeAndOutput(t *testing.T) {
	prog := script(t, `echo "flashing $1"; echo "secure processor refused the image" >&2; exit 3`)
	err := Hook{Argv: []string{prog, "{file}"}}.Install(context.Background(), "/f.bin", "fw", "2.0")
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("error %v (%T), want *HookError", err, err)
	}
	if he.ExitCode != 3 || he.TimedOut {
		t.Fatalf("exit %d timedOut %v", he.ExitCode, he.TimedOut)
	}
	if !strings.Contains(he.Output, "flashing /f.bin") || !strings.Contains(he.Output, "refused the image") {
		t.Fatalf("output %q", he.Output)
	}
	if !strings.Contains(err.Error(), "status 3") || !strings.Contains(err.Error(), "refused the image") {
		t.Fatalf("message %q", err)
	}
}

func TestInstallOutputKeepsOnlyTheTail(t *testing.T) {
	prog := script(t, `i=0; while [ $i -lt 2000 ]; do echo "line $i of noise"; i=$((i+1)); done; echo LAST-LINE; exit 1`)
	err := Hook{Argv: []string{prog, "{file}"}}.Install(context.Background(), "/f", "fw", "1")
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("error %v", err)
	}
	body := strings.TrimPrefix(he.Output, "…")
	if len(body) > MaxOutput {
		t.Fatalf("kept %d bytes of output, bound %d", len(body), MaxOutput)
	}
	if !strings.HasSuffix(he.Output, "LAST-LINE\n") || strings.Contains(he.Output, "line 0 of") {
		t.Fatalf("output is not the tail: %q…", he.Output[:80])
	}
	if !strings.HasPrefix(he.Output, "…") {
		t.Fatal("a cut output is not marked")
	}
}

func TestInstallTimeoutKillsTheInstaller(t *testing.T) {
	prog := script(t, `echo started; sleep 60 & wait`)
	err := Hook{Argv: []string{prog, "{file}"}, Timeout: 300 * time.Millisecond}.Install(context.Background(), "/f", "fw", "1")
	var he *HookError
	if !errors.As(err, &he) || !he.TimedOut || he.ExitCode != -1 {
		t.Fatalf("error %v, want a timed-out *HookError", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(he.Output, "started") {
		t.Fatalf("error %v, output %q", err, he.Output)
	}
}

func TestInstallCancelledReturnsContextError(t *testing.T) {
	prog := script(t, `sleep 60 & wait`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Hook{Argv: []string{prog, "{file}"}}.Install(ctx, "/f", "fw", "1") }()
	cancel()
	err := <-done
	var he *HookError
	if !errors.Is(err, context.Canceled) || errors.As(err, &he) {
		t.Fatalf("error %v, want context.Canceled and no HookError", err)
	}
}

func TestNoInstaller(t *testing.T) {
	for _, argv := range [][]string{nil, {}, {""}} {
		if err := (Hook{Argv: argv}).Install(context.Background(), "/f", "fw", "1"); !errors.Is(err, ErrNoInstaller) {
			t.Fatalf("argv %q: %v", argv, err)
		}
	}
}

func TestMissingProgram(t *testing.T) {
	err := Hook{Argv: []string{filepath.Join(t.TempDir(), "absent"), "{file}"}}.Install(context.Background(), "/f", "fw", "1")
	var he *HookError
	if !errors.As(err, &he) || he.ExitCode != -1 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v", err)
	}
}

func TestTailWrites(t *testing.T) {
	tl := &tail{max: 8}
	for _, s := range []string{"abc", "defg", "hij", "0123456789", "xy"} {
		_, _ = tl.Write([]byte(s))
	}
	// The last 8 bytes of everything written, marked as cut.
	if got := tl.String(); got != "…456789xy" {
		t.Fatalf("tail %q", got)
	}
	small := &tail{max: 8}
	_, _ = small.Write([]byte("ok"))
	if small.String() != "ok" {
		t.Fatalf("tail %q", small.String())
	}
}
