package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/board/sim/pty"
)

func selftestConfig(t *testing.T, pinpadPath, readerPath string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`device_id = "ST-1"
data_dir = %q
board = "sim"

[log]
file = "-"

[[devices]]
name = "pinpad"
kind = "pinpad"
[devices.port]
path = %q
baud = 115200

[[devices]]
name = "cardreader"
kind = "cardreader"
[devices.port]
path = %q
baud = 115200
`, filepath.Join(dir, "data"), pinpadPath, readerPath)
	path := filepath.Join(dir, "posagent.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSelfTestCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("drives emulators over pseudo-terminals for several seconds; skipped with -short")
	}
	dev := t.TempDir()
	pad, err := pinpademu.New(pinpademu.Options{Dir: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer pad.Close()
	line, err := pty.Open(dev, "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	reader := cardemu.Start(line, cardemu.Default(), cardemu.Options{})
	defer reader.Close()

	var out, errb bytes.Buffer
	if code := run([]string{"selftest", "--config", selftestConfig(t, pad.Path(), line.Path())}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"pinpad (pinpad): ok", "cardreader (cardreader): ok", "self-test passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// The PIN pad unplugged: the self-test says which device failed and exits 1.
	pad.Unplug()
	out.Reset()
	if code := run([]string{"selftest", "--config", selftestConfig(t, pad.Path(), line.Path())}, &out, &errb); code != 1 {
		t.Fatalf("exit %d with the PIN pad unplugged\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "pinpad (pinpad): FAILED") || !strings.Contains(out.String(), "cardreader (cardreader): ok") {
		t.Fatalf("output:\n%s", out.String())
	}
}
