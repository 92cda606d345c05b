package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/internal/browsertest"
	"github.com/posagent/posagent/internal/otatest"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/update"
)

// The technician's diagnostics port of the real agent, driven in a real browser (headless
// Chromium): sign in with a TMS-issued token, live status, a self-test, a test print on the
// printer emulator, an update's progress bar moving. Screenshots go to artefacts/; with
// POSAGENT_UPDATE_SCREENSHOT=1 the desktop one also becomes docs/diag-console.png.

// diagConfig turns the port on for a test: an ephemeral loopback port, a sample a second.
const diagConfig = `
[diag]
listen = "127.0.0.1:0"
history_interval = "1s"
`

// diagAgent is an in-process agent with its diagnostics port, which a test may stop and
// start again on the same data (the harness's agent only stops when the test ends).
type diagAgent struct {
	a    *agent.Agent
	url  string // http://127.0.0.1:PORT
	stop func()
}

func (e *env) startDiagAgent(extra string) *diagAgent {
	e.t.Helper()
	cfg, err := config.Load(e.configFile(diagConfig + extra))
	if err != nil {
		e.t.Fatal(err)
	}
	got := make(chan *agent.Agent, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncio.Buffer{}
	e.logs = logs
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	services := map[string]func(context.Context, *agent.Agent) error{"test-handle": func(ctx context.Context, a *agent.Agent) error {
		select {
		case got <- a:
		default:
		}
		<-ctx.Done()
		return nil
	}}
	go func() { done <- agent.Run(ctx, cfg, agent.Options{Logger: log, Services: services}) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("agent: %v", err)
			}
			if e.t.Failed() {
				e.t.Logf("agent log:\n%s", logs.String())
			}
		})
	}
	e.t.Cleanup(stop)
	var a *agent.Agent
	select {
	case a = <-got:
	case err := <-done:
		done <- err
		e.t.Fatalf("agent stopped at start: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		e.t.Fatal("agent did not start")
	}
	waitFor(e.t, 20*time.Second, "the diagnostics port", func() bool { return a.DiagAddr() != "" })
	return &diagAgent{a: a, url: "http://" + a.DiagAddr(), stop: stop}
}

// techToken issues a technician token with the TMS command key the terminal trusts.
func (e *env) techToken(t testing.TB, c auth.Claims) string {
	t.Helper()
	if c.IssuedAt == 0 {
		c.IssuedAt = time.Now().Add(-time.Minute).Unix()
	}
	if c.Expires == 0 {
		c.Expires = time.Now().Add(time.Hour).Unix()
	}
	if len(c.Terminals) == 0 {
		c.Terminals = []string{e.device}
	}
	tok, err := auth.IssueToken(e.key.Key, e.key.ID, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// consoleLogin signs in on the console's login page with a token and waits for the app.
func consoleLogin(t testing.TB, p *browsertest.Page, url, token string) {
	t.Helper()
	if err := p.Navigate(url + "/"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitVisible("#login-form"); err != nil {
		t.Fatal(err)
	}
	// The token is long: set it at once rather than typing ~400 key events.
	if err := p.SetValue("#login-token", token); err != nil {
		t.Fatal(err)
	}
	if err := p.Click("#login-submit"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitVisible("#whoami"); err != nil {
		msg, _ := p.Text("#login-error")
		t.Fatalf("%v (login error shown: %q)", err, msg)
	}
}

// waitAction clicks button[data-action=action] and waits for #action-result to report it;
// it returns data-ok and the result's text.
func waitAction(t testing.TB, p *browsertest.Page, action string, limit time.Duration) (bool, string) {
	t.Helper()
	if err := p.Click(fmt.Sprintf(`#actions button[data-action=%q]`, action)); err != nil {
		t.Fatal(err)
	}
	var ok string
	js := fmt.Sprintf(`(() => { const r = document.getElementById('action-result');
		return r.getAttribute('data-action') === %q && r.getAttribute('data-ok') })()`, action)
	if err := p.WaitForWithin(limit, "the result of "+action, js, &ok); err != nil {
		t.Fatal(err)
	}
	text, _ := p.Text("#action-result")
	return ok == "true", text
}

// gatedFile serves content with Range support, but only up to an allowance the test raises
// step by step, so a download's progress is seen at known points without timing anything.
type gatedFile struct {
	content []byte
	mu      sync.Mutex
	allowed int64
	raised  chan struct{} // closed and replaced on each raise
}

func newGatedFile(content []byte) *gatedFile {
	return &gatedFile{content: content, raised: make(chan struct{})}
}

func (g *gatedFile) allow(n int64) {
	g.mu.Lock()
	g.allowed = min(n, int64(len(g.content)))
	close(g.raised)
	g.raised = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedFile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.ServeContent(w, r, "big.bin", time.Time{}, &gatedReader{g: g, ctx: r.Context(), w: w})
}

// gatedReader is an io.ReadSeeker over the content that blocks at the allowance, flushing
// what was written so the client sees it.
type gatedReader struct {
	g   *gatedFile
	ctx context.Context
	w   http.ResponseWriter
	off int64
}

func (r *gatedReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		r.off = offset
	case io.SeekCurrent:
		r.off += offset
	case io.SeekEnd:
		r.off = int64(len(r.g.content)) + offset
	}
	return r.off, nil
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if r.off >= int64(len(r.g.content)) {
		return 0, io.EOF
	}
	for {
		r.g.mu.Lock()
		allowed, raised := r.g.allowed, r.g.raised
		r.g.mu.Unlock()
		if r.off < allowed {
			n := copy(p, r.g.content[r.off:allowed])
			r.off += int64(n)
			return n, nil
		}
		if f, ok := r.w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-raised:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func TestDiagConsole(t *testing.T) {
	b := browsertest.Start(t) // first: skips before any agent starts
	const dev = "IT-DIAG-1"
	e := newEnv(t, dev)
	line, err := pty.Open(t.TempDir(), "printer")
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	emu, err := printeremu.New(line, printeremu.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	rel := otatest.NewKey(t, "rel-1")
	images := filepath.Join(t.TempDir(), "images")
	d := e.startDiagAgent(fmt.Sprintf(`
[[devices]]
name = "printer"
kind = "printer"
[devices.port]
path = %q
baud = 115200

[[license.release_keys]]
id = %q
public_key = %q

[ota]
max_component_size = "8MiB"
locations = { images = %q }
`, line.Path(), rel.ID, base64.StdEncoding.EncodeToString(rel.Public()), images))
	waitFor(t, 20*time.Second, "online", func() bool { return e.onlineVersion() != "" })
	serial := d.a.Snapshot(context.Background()).Device.Serial

	token := e.techToken(t, auth.Claims{ID: "it-diag-1", Technician: "tech-7", Name: "Асель Н.", Role: auth.RoleService})
	p := b.MustPage(t)
	if err := p.Resize(browsertest.Phone); err != nil {
		t.Fatal(err)
	}
	consoleLogin(t, p, d.url, token)
	if who, err := p.Text("#whoami"); err != nil || !strings.Contains(who, "Асель Н.") || !strings.Contains(who, "service") {
		t.Errorf("#whoami = %q, %v", who, err)
	}

	// Live status: the terminal's serial, the TMS link, the board's devices.
	if err := p.WaitFor("the serial", fmt.Sprintf(`document.getElementById('status-serial').textContent === %q`, serial), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("TMS connected", `document.getElementById('tms-state').textContent === 'connected'`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("the printer in the hardware list", `document.querySelector('#hardware li[data-device="printer"]')`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("two resource samples drawn", `document.querySelector('#chart-rss polyline')`, nil); err != nil {
		t.Fatal(err)
	}
	p.Screenshot(t, "diag-console-status-phone")

	// A self-test from the console: one result per device, all good on the sim board.
	ok, text := waitAction(t, p, "selftest", time.Minute)
	if !ok {
		t.Fatalf("selftest failed in the console: %s", text)
	}
	var results []struct {
		Device string `json:"device"`
		OK     string `json:"ok"`
	}
	if err := p.Eval(`[...document.querySelectorAll('#selftest-results li')].map(li => ({device: li.getAttribute('data-device'), ok: li.getAttribute('data-ok')}))`, &results); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Device] = true
		if r.OK != "true" {
			t.Errorf("self-test of %s: data-ok=%s", r.Device, r.OK)
		}
	}
	for _, want := range []string{board.LineStatusLED, board.LineBuzzer} {
		if !seen[want] {
			t.Errorf("self-test results %v lack %s", results, want)
		}
	}
	p.Screenshot(t, "diag-console-selftest-phone")

	// A test print: the printer emulator receives the page.
	if ok, text := waitAction(t, p, "test.print", time.Minute); !ok {
		t.Fatalf("test print failed in the console: %s", text)
	}
	waitFor(t, 20*time.Second, "the test page", func() bool {
		rs := emu.Receipts()
		return len(rs) == 1 && strings.Contains(rs[0].Text, dev) && strings.Contains(rs[0].Text, "END OF TEST")
	})

	// An update of a large file from a source the test releases step by step: the bar moves.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	gate := newGatedFile(big)
	srv := newLoopbackServer(t, gate)
	sum := sha256.Sum256(big)
	release := manifest.Release{Name: "2026.12.1", Serial: 1, Components: []manifest.Component{{
		Name: "bigfile", Kind: manifest.KindFile, Version: "1.0", Location: "images", Path: "big.bin",
		Size: int64(len(big)), SHA256: sum[:]}}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "ota.install", Body: cborBody(t, update.InstallBody{
		Manifest: rel.Sign(t, release), Now: true,
		Sources: map[string]update.SourceSpec{"bigfile": {URL: srv + "/big.bin"}}})})
	if err != nil {
		t.Fatal(err)
	}
	readBar := func(what string, above int) int {
		t.Helper()
		var v int
		js := fmt.Sprintf(`(() => { const b = document.getElementById('ota-bar');
			return b.getAttribute('data-stage') === 'downloading' && b.value > %d && b.value })()`, above)
		if err := p.WaitForWithin(time.Minute, what, js, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	gate.allow(int64(len(big)) * 3 / 10)
	first := readBar("the bar at 30% of the file", 0)
	gate.allow(int64(len(big)) * 7 / 10)
	second := readBar("the bar past its first reading", first)
	if stage, _ := p.Text("#ota-stage"); stage != "downloading" {
		t.Errorf("#ota-stage = %q while downloading", stage)
	}
	p.Screenshot(t, "diag-console-ota-phone")
	gate.allow(int64(len(big)))
	acks := e.finalAckList(sent.Match(), 2*time.Minute)
	if a := acks[len(acks)-1]; a.State != tmsproto.StateSucceeded {
		t.Fatalf("ota.install: %+v", a)
	}
	t.Logf("OTA bar read %d then %d", first, second)
	if err := p.WaitFor("the bar back to idle", `document.getElementById('ota-bar').getAttribute('data-stage') === ''`, nil); err != nil {
		t.Error(err)
	}

	// The audit list shows what the technician did, and the chain verifies from the console.
	if err := p.Click("#audit-verify"); err != nil {
		t.Fatal(err)
	}
	var verified string
	if err := p.WaitFor("the audit verify result", `(() => { const r = document.getElementById('action-result');
		return r.getAttribute('data-action') === 'audit.verify' && r.getAttribute('data-ok') })()`, &verified); err != nil {
		t.Fatal(err)
	}
	if verified != "true" {
		text, _ := p.Text("#action-result")
		t.Errorf("audit.verify in the console: %s", text)
	}
	var actions []string
	if err := p.WaitFor("selftest in the audit list", `(() => { const a = [...document.querySelectorAll('#audit-list li .a')].map(x => x.textContent);
		return a.includes('selftest') && a.includes('diag.login') && a })()`, &actions); err != nil {
		t.Error(err)
	}

	// The desktop layout, then sign out: the login page is back and the API refuses.
	if err := p.Resize(browsertest.Desktop); err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(d.url + "/"); err != nil { // the session survives a reload
		t.Fatal(err)
	}
	if err := p.WaitFor("status after reload", fmt.Sprintf(`document.getElementById('status-serial').textContent === %q`, serial), nil); err != nil {
		t.Fatal(err)
	}
	shot := p.Screenshot(t, "diag-console-desktop")
	if os.Getenv("POSAGENT_UPDATE_SCREENSHOT") == "1" {
		data, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "diag-console.png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Click("#logout"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitVisible("#login-form"); err != nil {
		t.Fatal(err)
	}
	var status int
	if err := p.Eval(`fetch('/api/status').then(r => r.status)`, &status); err != nil || status != http.StatusUnauthorized {
		t.Errorf("/api/status after sign-out: %d, %v", status, err)
	}

	// Everything the technician did is in the audit log, under the technician's id.
	entries, err := d.a.Audit().Recent(200)
	if err != nil {
		t.Fatal(err)
	}
	did := map[string]string{}
	for _, en := range entries {
		if en.Actor == "tech-7" {
			did[en.Action] = en.Outcome
		}
	}
	for _, want := range []string{"diag.login", "selftest", "test.print", "audit.verify", "diag.logout"} {
		if did[want] != "ok" {
			t.Errorf("audit: %s by tech-7 = %q (have %v)", want, did[want], did)
		}
	}
}

// finalAckList waits for a final ack matching m and returns the command's acks so far.
func (e *env) finalAckList(m tmsclient.AckMatch, timeout time.Duration) []tmsproto.Ack {
	e.t.Helper()
	var out []tmsproto.Ack
	waitFor(e.t, timeout, "final ack of "+m.ID, func() bool {
		out = e.acks(m)
		return len(out) > 0 && out[len(out)-1].State.Final()
	})
	return out
}

// newLoopbackServer serves h on 127.0.0.1 (plain http is accepted there for update sources)
// and returns its base URL.
func newLoopbackServer(t testing.TB, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// apiClient is a plain HTTP client of the diagnostics API with its own cookie jar, for what
// a browser cannot show (status codes of every route, headers).
type apiClient struct {
	t    testing.TB
	base string
	hc   *http.Client
	csrf string
}

func newAPIClient(t testing.TB, base string) *apiClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &apiClient{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: time.Minute}}
}

// apiAnswer is one answer: status, headers, body and the error code if JSON.
type apiAnswer struct {
	Status int
	Header http.Header
	Body   []byte
	Code   string
}

func (c *apiClient) do(method, path string, body any, hdr map[string]string) apiAnswer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		if c.csrf != "" {
			req.Header.Set("X-CSRF-Token", c.csrf)
		}
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	a := apiAnswer{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil {
			a.Code = e.Error
		}
	}
	return a
}

// login signs in with a token or password; on success it keeps the CSRF token.
func (c *apiClient) login(cred map[string]string) apiAnswer {
	c.t.Helper()
	a := c.do(http.MethodPost, "/api/login", cred, nil)
	if a.Status == http.StatusOK {
		var s struct {
			CSRF string `json:"csrf"`
		}
		if err := json.Unmarshal(a.Body, &s); err != nil {
			c.t.Fatalf("login answer: %v", err)
		}
		c.csrf = s.CSRF
	}
	return a
}

// act runs an action and decodes its answer.
func (c *apiClient) act(action string, params any) (apiAnswer, actionAnswer) {
	c.t.Helper()
	a := c.do(http.MethodPost, "/api/actions/"+action, params, nil)
	var r actionAnswer
	if a.Status == http.StatusOK {
		if err := json.Unmarshal(a.Body, &r); err != nil {
			c.t.Fatalf("%s answer %s: %v", action, a.Body, err)
		}
	}
	return a, r
}

type actionAnswer struct {
	Action string          `json:"action"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}
