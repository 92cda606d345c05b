package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Luhn-valid card numbers (test ranges) and one that fails the check.
const (
	pan16     = "6222021234561236"
	pan16Mask = "622202******1236"
	pan13     = "4111111111119"
	pan19     = "6222021234567890128"
	notLuhn   = "6222021234561234"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.SplitSeq(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: line %q is not JSON: %v", path, line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNewWritesBothOutputs(t *testing.T) {
	var stderr bytes.Buffer
	path := filepath.Join(t.TempDir(), "logs", "agent.log")
	l, err := New(Options{Level: slog.LevelInfo, Format: "text", Stderr: &stderr, File: path, MaxSize: 1 << 20, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Logger.Debug("hidden")
	l.Logger.Info("hello", "n", 1)
	l.SetLevel(slog.LevelDebug)
	l.Logger.Debug("now visible")

	if !strings.Contains(stderr.String(), "msg=hello n=1") || strings.Contains(stderr.String(), "hidden") ||
		!strings.Contains(stderr.String(), "now visible") {
		t.Errorf("stderr = %q", stderr.String())
	}
	lines := readLines(t, path)
	if len(lines) != 2 || lines[0]["msg"] != "hello" || lines[1]["msg"] != "now visible" {
		t.Errorf("file lines = %v", lines)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v", st.Mode(), err)
	}
	if l.Level() != slog.LevelDebug || l.File().Path() != path {
		t.Errorf("Level = %v, File = %q", l.Level(), l.File().Path())
	}
	var n int
	if err := l.ReadRange(time.Time{}, time.Time{}, func([]byte) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("ReadRange: %d lines, %v", n, err)
	}
}

func TestNewJSONStderrAndNoFile(t *testing.T) {
	var stderr bytes.Buffer
	l, err := New(Options{Level: slog.LevelWarn, Format: "json", Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	l.Logger.Info("dropped")
	l.Logger.Warn("w")
	var m map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &m); err != nil || m["msg"] != "w" {
		t.Errorf("stderr %q: %v", stderr.String(), err)
	}
	if err := l.ReadRange(time.Time{}, time.Time{}, func([]byte) error { return nil }); !errors.Is(err, ErrNoFile) {
		t.Errorf("ReadRange without file = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
	if _, err := New(Options{Format: "xml"}); err == nil {
		t.Error("unknown format accepted")
	}
	// A log file that cannot be created is an error, not a silent loss of the file log.
	blocker := filepath.Join(t.TempDir(), "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{File: filepath.Join(blocker, "agent.log"), Stderr: io.Discard}); err == nil {
		t.Error("log file under a regular file accepted")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.log")
	const maxSize = 2000
	l, err := New(Options{Stderr: new(bytes.Buffer), File: path, MaxSize: maxSize, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		l.Logger.Info("line", "i", i, "pad", strings.Repeat("x", 50))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agent.log", "agent.log.1", "agent.log.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Size() > maxSize || st.Size() == 0 {
			t.Errorf("%s is %d bytes, want (0, %d]", name, st.Size(), maxSize)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.log.3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("agent.log.3 kept: %v", err)
	}
	// The newest line is in the current file, and the files are in order.
	cur := readLines(t, path)
	if last := cur[len(cur)-1]["i"]; last != float64(199) {
		t.Errorf("last line i = %v", last)
	}
	older := readLines(t, path+".1")
	if older[len(older)-1]["i"].(float64)+1 != cur[0]["i"].(float64) {
		t.Errorf("file.1 does not end right before file starts: %v / %v", older[len(older)-1]["i"], cur[0]["i"])
	}
	// Writing after Close fails instead of reopening the file.
	if _, err := l.File().Write([]byte("x\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close = %v", err)
	}
}

func TestRotationKeepZeroAndStaleFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	for n := 1; n <= 5; n++ {
		if err := os.WriteFile(fmt.Sprintf("%s.%d", path, n), []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := OpenRotating(path, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("stale rotated files survived keep=0: %v", entries)
	}
	for _, s := range []string{"12345678\n", "abcdefgh\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != "abcdefgh\n" {
		t.Errorf("keep=0 file = %q, want only the newest line", data)
	}
	if _, err := OpenRotating(path, 0, 1); err == nil {
		t.Error("zero max size accepted")
	}
}

func TestSecretsNeverReachTheFile(t *testing.T) {
	var stderr bytes.Buffer
	path := filepath.Join(t.TempDir(), "agent.log")
	l, err := New(Options{Level: slog.LevelDebug, Stderr: &stderr, File: path, MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const keyHex = "0123456789ABCDEFFEDCBA9876543210"
	const pinBlock = "041234FFFFFFFFFF"
	const track2 = pan16 + "=25121010000012300000"
	type card struct{ PAN string }

	log := l.Logger.With("terminal_pan", pan13, "masterKey", keyHex)
	log.Info("card read "+pan16, "pan", pan19, "pinblock", pinBlock, "track2", track2,
		"session_key", keyHex, "cvv", "123", "password", "hunter2", "auth_token", "tok",
		"key_id", "tms-cmd-1", "password_file", "/etc/pw", "pinpad", "ok",
		slog.Group("emv", "PINBlock", pinBlock, "tag57", track2),
		"err", fmt.Errorf("decline for %s", pan16), "card", card{PAN: pan16},
		"panNumber", int64(6222021234561236), "plain", notLuhn)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	for name, out := range map[string]string{"file": string(file), "stderr": stderr.String()} {
		for _, secret := range []string{pan16, pan13, pan19, keyHex, pinBlock, "hunter2", "=2512", "tok\""} {
			if strings.Contains(out, secret) {
				t.Errorf("%s contains %q:\n%s", name, secret, out)
			}
		}
		for _, kept := range []string{pan16Mask, "411111***1119", "622202*********0128", "tms-cmd-1", "/etc/pw", notLuhn} {
			if !strings.Contains(out, kept) {
				t.Errorf("%s lacks %q:\n%s", name, kept, out)
			}
		}
	}
	m := readLines(t, path)[0]
	for _, k := range []string{"pinblock", "track2", "session_key", "cvv", "password", "auth_token", "masterKey"} {
		if m[k] != Redacted {
			t.Errorf("%s = %v, want %s", k, m[k], Redacted)
		}
	}
	if m["pinpad"] != "ok" {
		t.Errorf("pinpad = %v: a device name is not a secret", m["pinpad"])
	}
	if emv := m["emv"].(map[string]any); emv["PINBlock"] != Redacted || emv["tag57"] != pan16Mask+"="+strings.Repeat("*", 20) {
		t.Errorf("group emv = %v", emv)
	}
}

func TestMaskPANs(t *testing.T) {
	for in, want := range map[string]string{
		pan16:                          pan16Mask,
		"pan=" + pan16 + ";":           "pan=" + pan16Mask + ";",
		pan13:                          "411111***1119",
		pan19:                          "622202*********0128",
		notLuhn:                        notLuhn,
		"123456789012":                 "123456789012",         // 12 digits: too short
		"12345678901234567890":         "12345678901234567890", // 20 digits: too long
		"a " + pan16 + " b " + pan13:   "a " + pan16Mask + " b 411111***1119",
		"stan 000123 rrn 612345678901": "stan 000123 rrn 612345678901",
		"":                             "",
		pan16 + "=2512101":             pan16Mask + "=*******",
		pan16 + "D2512101x":            pan16Mask + "D*******x",
		notLuhn + "=2512":              notLuhn + "=2512",
		pan16 + "=":                    pan16Mask + "=",
	} {
		if got := MaskPANs(in); got != want {
			t.Errorf("MaskPANs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	for key, want := range map[string]bool{
		"pin": true, "PIN": true, "pinblock": true, "pin_block": true, "PINBlock": true, "pinBlock": true,
		"key": true, "masterKey": true, "session_key": true, "workingkey": true, "track": true,
		"track2": true, "Track2Data": true, "track2_data": true, "cvv": true, "cvv2": true,
		"password": true, "adminPassword": true, "secret": true, "client-secret": true,
		"token": true, "authToken": true, "api.token": true,
		"key_id": false, "keyID": false, "password_file": false, "key_kcv": false, "pinpad": false,
		"pin_pad": false, "ping": false, "kind": false, "keys_loaded": false, "service": false,
		"pan": false, "msg": false, "": false, "spinner": false, "monkey_count": false,
	} {
		if got := SensitiveKey(key); got != want {
			t.Errorf("SensitiveKey(%q) = %v, want %v (words %q)", key, got, want, splitWords(key))
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, " warn ": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel accepted junk")
	}
}
