// Package browsertest drives a real headless Chromium (Debian's chromium package) through the
// DevTools protocol with chromedp, for tests of the pages the agent serves: the technician
// console, its security headers and its behaviour under a cross-origin attacker.
//
// Tests that use it are skipped under -short (the ARM runs under qemu have no browser) and
// when no chromium is installed, except with CI=true where a missing browser fails the test:
// CI installs chromium (.ci/run), so a skip there would hide a broken setup.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Environment variables read by Start and Screenshot.
const (
	EnvChromium  = "POSAGENT_CHROMIUM"  // path of the browser; default DefaultChromium
	EnvArtefacts = "POSAGENT_ARTEFACTS" // where screenshots go; default <repo>/artefacts
)

// DefaultChromium is where Debian's chromium package installs the browser.
const DefaultChromium = "/usr/bin/chromium"

// Size is a browser viewport in CSS pixels.
type Size struct{ Width, Height int }

// The two viewports the console is checked at: a phone first, then a desktop screen.
var (
	Phone   = Size{Width: 412, Height: 915}
	Desktop = Size{Width: 1280, Height: 900}
)

// ActionTimeout bounds each single page action (a click, a wait) unless the page's context
// ends sooner, so that a console that never shows an element fails the test with the
// selector in the message instead of hanging until the test binary's timeout.
const ActionTimeout = 30 * time.Second

// ErrTimeout is returned (wrapped) by waits whose condition did not become true in time.
var ErrTimeout = errors.New("browsertest: timed out")

// Browser is one headless Chromium process. Its tabs (Page) are independent of each other
// but share the browser's cookie jar, as tabs of a real browser do.
type Browser struct {
	ctx    context.Context // the browser's chromedp context; its first tab is never used
	output *lockedBuffer   // the browser's stdout and stderr, shown when a test fails
}

// Start launches a headless Chromium for tb and closes it when tb ends. It skips tb under
// -short, and when the browser is absent (unless CI=true, then it fails tb).
func Start(tb testing.TB) *Browser {
	tb.Helper()
	if testing.Short() {
		tb.Skip("browsertest: browser tests are skipped under -short")
	}
	path := os.Getenv(EnvChromium)
	if path == "" {
		path = DefaultChromium
	}
	if _, err := exec.LookPath(path); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("browsertest: chromium is required when CI=true: %v (set %s or install chromium)", err, EnvChromium)
		}
		tb.Skipf("browsertest: chromium not found (%v); install chromium or set %s", err, EnvChromium)
	}

	// Our own profile directory rather than tb.TempDir: Chromium's helper processes can
	// still write into it for a moment after the browser exits, which would fail the
	// testing package's strict TempDir removal; removeDir retries instead.
	dir, err := os.MkdirTemp("", "posagent-chromium-")
	if err != nil {
		tb.Fatalf("browsertest: profile directory: %v", err)
	}
	out := &lockedBuffer{limit: 64 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(Desktop.Width, Desktop.Height),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	b := &Browser{ctx: ctx, output: out}
	tb.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to end
		if err := removeDir(dir); err != nil {
			tb.Logf("browsertest: profile directory left behind: %v", err)
		}
		if tb.Failed() {
			tb.Logf("browsertest: chromium output:\n%s", relevant(out.String()))
		}
	})
	// The first action starts the browser; it is bound to ctx (the test's lifetime), so no
	// deadline here — a start that hangs is bounded by the allocator's own start timeout.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("browsertest: start %s: %v\n%s", path, err, relevant(out.String()))
	}
	return b
}

// Page opens a new tab. It closes when ctx ends or on Close; ctx's deadline, if any, also
// bounds every action on the page.
func (b *Browser) Page(ctx context.Context) (*Page, error) {
	tabCtx, cancelTab := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(tabCtx); err != nil { // opens the tab
		cancelTab()
		return nil, fmt.Errorf("browsertest: open tab: %w", err)
	}
	pctx := tabCtx
	cancel := cancelTab
	if dl, ok := ctx.Deadline(); ok {
		var cancelDL context.CancelFunc
		pctx, cancelDL = context.WithDeadline(tabCtx, dl)
		cancel = func() { cancelDL(); cancelTab() }
	}
	stop := context.AfterFunc(ctx, cancel)
	return &Page{ctx: pctx, close: func() { stop(); cancel() }}, nil
}

// MustPage is Page for tests: it fails tb on error and closes the tab when tb ends.
func (b *Browser) MustPage(tb testing.TB) *Page {
	tb.Helper()
	p, err := b.Page(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// lockedBuffer keeps the first limit bytes of the browser's output; chromedp copies it from
// its own goroutine while a failing test may read it.
type lockedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.limit - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

var _ io.Writer = (*lockedBuffer)(nil)

// relevant drops the lines a headless browser in a container always prints (no D-Bus), so
// that a failing test shows what matters.
func relevant(output string) string {
	var keep []string
	for line := range strings.Lines(output) {
		if !strings.Contains(line, "dbus/") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// removeDir removes dir, retrying for a few seconds while Chromium's helpers finish writing.
func removeDir(dir string) error {
	var err error
	for range 50 {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// ArtefactsDir is the directory for screenshots: $POSAGENT_ARTEFACTS, else artefacts/ at the
// repository root (found from the working directory by its go.mod). It is created with a
// .gitignore that ignores everything in it, so screenshots never end up in a commit.
func ArtefactsDir() (string, error) {
	dir := os.Getenv(EnvArtefacts)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "artefacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("browsertest: artefacts: %w", err)
	}
	ignore := filepath.Join(dir, ".gitignore")
	if _, err := os.Stat(ignore); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(ignore, []byte("*\n"), 0o644); err != nil {
			return "", fmt.Errorf("browsertest: artefacts: %w", err)
		}
	}
	return dir, nil
}

const modulePath = "github.com/posagent/posagent"

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("browsertest: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("browsertest: no go.mod of %s above the working directory; set %s", modulePath, EnvArtefacts)
		}
		dir = parent
	}
}
