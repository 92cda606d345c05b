// Package apktest is a fake Android package manager for tests: a `pm` shell script on PATH
// that keeps installed packages in files, records every call and fails on request.
//
// A fake APK is a text file with "package=com.x" and "versionCode=12" lines (MakeAPK).
package apktest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Fake is one fake package manager.
type Fake struct {
	t testing.TB
	// Dir holds the pm script and its state.
	Dir string
	// Path is the pm script.
	Path string
}

// script is POSIX sh. State: installed/<package> holds the versionCode; fail/<op>.<package>
// makes that operation fail; calls.log gets one line per call.
const script = `#!/bin/sh
state=%s
printf '%%s\n' "$*" >> "$state/calls.log"
failure() { echo "Failure [$1]"; exit 1; }
case "$1" in
list)
	if [ "$*" != "list packages --show-versioncode -3" ]; then
		echo "Error: fake pm only knows 'list packages --show-versioncode -3'" >&2; exit 1
	fi
	if [ -e "$state/fail/list." ]; then echo "Error: could not access the Package Manager" >&2; exit 1; fi
	for f in "$state"/installed/*; do
		[ -e "$f" ] || continue
		printf 'package:%%s versionCode:%%s\n' "${f##*/}" "$(cat "$f")"
	done
	;;
install)
	if [ "$#" -ne 3 ] || [ "$2" != "-r" ]; then echo "Error: usage: pm install -r FILE" >&2; exit 1; fi
	[ -r "$3" ] || failure "INSTALL_FAILED_INVALID_URI"
	pkg=$(sed -n 's/^package=//p' "$3")
	code=$(sed -n 's/^versionCode=//p' "$3")
	case "$code" in ''|*[!0-9]*) failure "INSTALL_PARSE_FAILED_NOT_APK: not a fake APK" ;; esac
	[ -n "$pkg" ] || failure "INSTALL_PARSE_FAILED_NOT_APK: not a fake APK"
	echo "Performing Streamed Install"
	[ -e "$state/fail/install.$pkg" ] && failure "INSTALL_FAILED_INTERNAL_ERROR"
	if [ -e "$state/installed/$pkg" ] && [ "$(cat "$state/installed/$pkg")" -gt "$code" ]; then
		failure "INSTALL_FAILED_VERSION_DOWNGRADE"
	fi
	printf '%%s\n' "$code" > "$state/installed/$pkg"
	echo Success
	;;
uninstall)
	if [ "$#" -ne 2 ]; then echo "Error: usage: pm uninstall PACKAGE" >&2; exit 1; fi
	[ -e "$state/fail/uninstall.$2" ] && failure "DELETE_FAILED_INTERNAL_ERROR"
	[ -e "$state/installed/$2" ] || failure "DELETE_FAILED_INTERNAL_ERROR"
	rm -f "$state/installed/$2"
	echo Success
	;;
*)
	echo "Error: unknown command '$1'" >&2; exit 1
	;;
esac
`

// Install writes the fake pm into a temporary folder and puts that folder first on PATH for
// the rest of the test (t.Setenv: the test cannot be parallel).
func Install(t testing.TB) *Fake {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for _, d := range []string{"installed", "fail"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(state, "calls.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, "pm")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(script, shQuote(state))), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return &Fake{t: t, Dir: dir, Path: path}
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (f *Fake) state(parts ...string) string {
	return filepath.Join(append([]string{f.Dir, "state"}, parts...)...)
}

// FailOn makes every later op ("install", "uninstall") on pkg print
// "Failure [INSTALL_FAILED_INTERNAL_ERROR]" (uninstall: DELETE_FAILED_INTERNAL_ERROR) and
// exit 1. FailOn("list", "") makes the listing fail.
func (f *Fake) FailOn(op, pkg string) {
	f.t.Helper()
	if err := os.WriteFile(f.state("fail", op+"."+pkg), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// Heal undoes FailOn.
func (f *Fake) Heal(op, pkg string) {
	f.t.Helper()
	if err := os.Remove(f.state("fail", op+"."+pkg)); err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
}

// Preinstall puts pkg at versionCode code on the device without a pm call, like a vendor or
// merchant application that was there before the agent.
func (f *Fake) Preinstall(pkg string, code int64) {
	f.t.Helper()
	if err := os.WriteFile(f.state("installed", pkg), []byte(strconv.FormatInt(code, 10)+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// Installed reads the packages on the fake device.
func (f *Fake) Installed() map[string]int64 {
	f.t.Helper()
	entries, err := os.ReadDir(f.state("installed"))
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		b, err := os.ReadFile(f.state("installed", e.Name()))
		if err != nil {
			f.t.Fatal(err)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			f.t.Fatalf("fake pm state of %s: %v", e.Name(), err)
		}
		out[e.Name()] = v
	}
	return out
}

// Calls returns the arguments of every pm call so far, one string each, joined by spaces
// (e.g. "install -r /tmp/x/a.apk").
func (f *Fake) Calls() []string {
	f.t.Helper()
	b, err := os.ReadFile(f.state("calls.log"))
	if err != nil {
		f.t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// MakeAPK writes a fake APK for pkg at versionCode code into dir and returns its path.
func MakeAPK(t testing.TB, dir, pkg string, code int64) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.apk", pkg, code))
	body := fmt.Sprintf("package=%s\nversionCode=%d\n", pkg, code)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
