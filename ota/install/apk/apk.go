// Package apk manages the Android applications of an APK set through the platform's package
// manager (the `pm` command): what is installed, what a desired set changes, install and
// uninstall.
//
// Only packages the agent itself installed ("managed") are ever uninstalled: the vendor's
// and the merchant's own applications are left alone whatever a release says.
package apk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// App is one application of a desired set.
type App struct {
	Package     string
	VersionCode int64
	File        string // the verified APK on disk
}

// DefaultTimeout bounds one pm call when PM.Timeout is zero; a large APK takes a while to
// dex-optimise on a slow terminal.
const DefaultTimeout = 5 * time.Minute

// maxListOutput bounds what `pm list packages` may print: a terminal has a few hundred
// packages at most, each line well under 256 bytes.
const maxListOutput = 1 << 20

// maxErrOutput bounds the output kept in an error.
const maxErrOutput = 2 << 10

// PM runs the Android package manager.
type PM struct {
	// Path is the pm program, looked up on PATH at each call when it has no slash
	// (default "pm").
	Path string
	// Timeout bounds each call (default DefaultTimeout).
	Timeout time.Duration
}

// PMError is a pm call that failed: non-zero exit, no "Success", or a "Failure [CODE]" line.
type PMError struct {
	Op       string // "install", "uninstall", "list"
	Target   string // the APK file or package
	Code     string // e.g. "INSTALL_FAILED_VERSION_DOWNGRADE"; "" when pm printed none
	ExitCode int    // -1 when pm did not run to an exit
	Output   string // the end of pm's output
	Err      error  // the underlying exec error, if any
}

func (e *PMError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apk: pm %s", e.Op)
	if e.Target != "" {
		fmt.Fprintf(&b, " %s", e.Target)
	}
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, ": %s", e.Code)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	case e.ExitCode != 0:
		fmt.Fprintf(&b, ": exit status %d", e.ExitCode)
	default:
		b.WriteString(": no Success reported")
	}
	if out := strings.TrimSpace(e.Output); out != "" && e.Code == "" {
		fmt.Fprintf(&b, ": %s", out)
	}
	return b.String()
}

func (e *PMError) Unwrap() error { return e.Err }

// ErrInvalidPackage is returned for a package name pm must not be given.
var ErrInvalidPackage = errors.New("apk: invalid package name")

// Installed lists the third-party packages and their versionCodes
// (`pm list packages --show-versioncode -3`).
func (p PM) Installed(ctx context.Context) (map[string]int64, error) {
	stdout, _, err := p.run(ctx, "list", "", "list", "packages", "--show-versioncode", "-3")
	if err != nil {
		return nil, err
	}
	return ParseList(stdout)
}

// Install installs or replaces the application in apkFile (`pm install -r`).
func (p PM) Install(ctx context.Context, apkFile string) error {
	if apkFile == "" {
		return &PMError{Op: "install", ExitCode: -1, Err: errors.New("no file")}
	}
	// An absolute path can never be read by pm as an option.
	abs, err := filepath.Abs(apkFile)
	if err != nil {
		return &PMError{Op: "install", Target: apkFile, ExitCode: -1, Err: err}
	}
	_, _, err = p.run(ctx, "install", abs, "install", "-r", abs)
	return err
}

// Uninstall removes pkg (`pm uninstall`).
func (p PM) Uninstall(ctx context.Context, pkg string) error {
	if !ValidPackage(pkg) {
		return fmt.Errorf("%w: %q", ErrInvalidPackage, pkg)
	}
	_, _, err := p.run(ctx, "uninstall", pkg, "uninstall", pkg)
	return err
}

// run executes pm and judges install/uninstall output: success is exit 0 with a "Success"
// line (older Android exits 0 after printing "Failure [...]").
func (p PM) run(ctx context.Context, op, target string, args ...string) (stdout, combined []byte, err error) {
	prog := p.Path
	if prog == "" {
		prog = "pm"
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, all limited
	out.max, all.max = maxListOutput, maxListOutput
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout = teeWriter{&out, &all}
	cmd.Stderr = &all
	killGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil && runErr != nil {
		return nil, nil, &PMError{Op: op, Target: target, ExitCode: -1, Output: tailString(all.b), Err: fmt.Errorf("%w: %w", ctx.Err(), runErr)}
	}
	pe := &PMError{Op: op, Target: target, Output: tailString(all.b), Code: failureCode(all.b)}
	var exit *exec.ExitError
	switch {
	case errors.As(runErr, &exit):
		pe.ExitCode, pe.Err = exit.ExitCode(), runErr
	case runErr != nil:
		pe.ExitCode, pe.Err = -1, runErr
	case out.over || all.over:
		pe.Err = fmt.Errorf("output exceeds %d bytes", maxListOutput)
	case op != "list" && (pe.Code != "" || !hasLine(all.b, "Success")):
		// Exit 0 is not enough: older Android exits 0 after printing "Failure [...]".
	default:
		return out.b, all.b, nil
	}
	return nil, nil, pe
}

// failureCode is the code of pm's "Failure [CODE: detail]" line, or "".
func failureCode(out []byte) string {
	for line := range strings.Lines(string(out)) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Failure [")
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, "]")
		code, _, _ := strings.Cut(rest, ":")
		if code = strings.TrimSpace(code); code != "" {
			return code
		}
		return "UNKNOWN"
	}
	return ""
}

func hasLine(out []byte, want string) bool {
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

func tailString(b []byte) string {
	if len(b) > maxErrOutput {
		b = b[len(b)-maxErrOutput:]
	}
	return strings.ToValidUTF8(string(b), "")
}

// limited collects up to max bytes and notes whether more came.
type limited struct {
	b    []byte
	max  int
	over bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); len(p) > room {
		l.over = true
		l.b = append(l.b, p[:max(room, 0)]...)
		return len(p), nil
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

type teeWriter struct{ a, b *limited }

func (t teeWriter) Write(p []byte) (int, error) {
	_, _ = t.a.Write(p)
	return t.b.Write(p)
}

// ParseError is a line of `pm list packages` output that is not "package:NAME versionCode:N".
type ParseError struct {
	Line   int    // 1-based
	Text   string // the line, cut to 80 bytes
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("apk: pm list line %d %q: %s", e.Line, e.Text, e.Reason)
}

// ParseList parses the output of `pm list packages --show-versioncode`: one
// "package:NAME versionCode:N" per line, blank lines ignored, anything else an error (a pm
// that prints something unexpected must not make the agent think an app is missing).
func ParseList(out []byte) (map[string]int64, error) {
	got := map[string]int64{}
	n := 0
	for line := range bytes.Lines(out) {
		n++
		text := strings.TrimRight(string(line), "\r\n")
		fail := func(reason string) error {
			shown := text
			if len(shown) > 80 {
				shown = shown[:80]
			}
			return &ParseError{Line: n, Text: strings.ToValidUTF8(shown, "?"), Reason: reason}
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		rest, ok := strings.CutPrefix(text, "package:")
		if !ok {
			return nil, fail(`no "package:" prefix`)
		}
		pkg, code, ok := strings.Cut(rest, " versionCode:")
		if !ok {
			return nil, fail(`no " versionCode:" field`)
		}
		if !ValidPackage(pkg) {
			return nil, fail("invalid package name")
		}
		if code == "" || code[0] < '0' || code[0] > '9' {
			return nil, fail("versionCode is not a number")
		}
		v, err := strconv.ParseInt(code, 10, 64)
		if err != nil {
			return nil, fail("versionCode is not a number")
		}
		if _, dup := got[pkg]; dup {
			return nil, fail("package listed twice")
		}
		got[pkg] = v
	}
	return got, nil
}

// ValidPackage reports whether s is an Android package name: dot-separated segments, each a
// letter followed by letters, digits or underscores, at most 255 bytes.
func ValidPackage(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for seg := range strings.SplitSeq(s, ".") {
		if seg == "" || !isLetter(seg[0]) {
			return false
		}
		for i := 1; i < len(seg); i++ {
			if c := seg[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// Plan is what makes the installed applications the desired set, each list sorted by
// package name.
type Plan struct {
	Install   []App    // missing, or installed with another versionCode
	Uninstall []string // managed packages installed but no longer desired
	Keep      []string // desired packages already at their versionCode
}

// Empty reports whether nothing is to be done.
func (p Plan) Empty() bool { return len(p.Install) == 0 && len(p.Uninstall) == 0 }

// Diff plans the changes from installed to desired. Only packages in managed (the ones the
// agent installed before) are ever uninstalled. A package named twice in desired counts
// once, with its first entry.
func Diff(desired []App, installed map[string]int64, managed []string) Plan {
	var p Plan
	want := map[string]bool{}
	apps := slices.Clone(desired)
	slices.SortStableFunc(apps, func(a, b App) int { return strings.Compare(a.Package, b.Package) })
	for _, a := range apps {
		if want[a.Package] {
			continue
		}
		want[a.Package] = true
		if v, ok := installed[a.Package]; ok && v == a.VersionCode {
			p.Keep = append(p.Keep, a.Package)
		} else {
			p.Install = append(p.Install, a)
		}
	}
	for _, pkg := range managed {
		if _, ok := installed[pkg]; ok && !want[pkg] && !slices.Contains(p.Uninstall, pkg) {
			p.Uninstall = append(p.Uninstall, pkg)
		}
	}
	slices.Sort(p.Uninstall)
	return p
}
