package browsertest

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The pages of the site under test carry the same strict CSP as the technician console, so
// these tests also prove the helpers work without injecting script into the page.
const strictCSP = "default-src 'none'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"

const counterPage = `<!doctype html><html><head><title>counter</title>
<script src="/app.js" defer></script></head>
<body><h1 id="title">Counter</h1>
<input id="name" type="text"><p id="hello"></p>
<button id="inc" type="button">+1</button>
<p id="count" data-n="0">0</p>
<p id="late" hidden>late</p></body></html>`

const counterJS = `document.getElementById('inc').addEventListener('click', () => {
  const c = document.getElementById('count');
  const n = Number(c.dataset.n) + 1;
  c.dataset.n = String(n); c.textContent = String(n);
  if (n === 3) setTimeout(() => { document.getElementById('late').hidden = false }, 200);
});
document.getElementById('name').addEventListener('input', (e) => {
  document.getElementById('hello').textContent = 'hello ' + e.target.value;
});`

// site is the site under test: 127.0.0.1, strict headers on every answer, and a record of
// the POSTs it got.
type site struct {
	*httptest.Server
	mu    sync.Mutex
	posts []http.Header
}

func newSite(t *testing.T) *site {
	s := &site{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.SetCookie(w, &http.Cookie{Name: "sess", Value: "s3cret", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		_, _ = w.Write([]byte(counterPage))
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(counterJS))
	})
	mux.HandleFunc("GET /open", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Del("X-Frame-Options")
		w.Header().Del("Content-Security-Policy")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><p id="open">anyone may frame me</p>`))
	})
	mux.HandleFunc("POST /api", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.posts = append(s.posts, r.Header.Clone())
		s.mu.Unlock()
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"csrf"}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("X-Frame-Options", "DENY")
		if r.URL.Path == "/api" && r.URL.Query().Has("corp") {
			w.Header().Set("Cross-Origin-Resource-Policy", "same-origin")
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *site) postHeaders() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.posts...)
}

func TestPageActions(t *testing.T) {
	b := Start(t)
	srv := newSite(t)
	p := b.MustPage(t)
	if err := p.Resize(Phone); err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Text("#title"); err != nil || got != "Counter" {
		t.Fatalf("title text = %q, %v", got, err)
	}
	if err := p.Type("#name", "Ada"); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Text("#hello"); err != nil || got != "hello Ada" {
		t.Fatalf("after typing: %q, %v (the page's input listener did not run)", got, err)
	}
	if err := p.SetValue("#name", "pat1.long-token"); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Text("#hello"); err != nil || got != "hello pat1.long-token" {
		t.Fatalf("after SetValue: %q, %v", got, err)
	}
	for range 3 {
		if err := p.Click("#inc"); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := p.Text("#count"); err != nil || got != "3" {
		t.Fatalf("count after 3 clicks = %q, %v", got, err)
	}
	if v, ok, err := p.Attr("#count", "data-n"); err != nil || !ok || v != "3" {
		t.Fatalf("data-n = %q %v %v", v, ok, err)
	}
	if _, ok, err := p.Attr("#count", "data-absent"); err != nil || ok {
		t.Fatalf("absent attribute: ok=%v err=%v", ok, err)
	}
	if _, ok, err := p.Attr("#no-such-element", "id"); err != nil || ok {
		t.Fatalf("absent element: ok=%v err=%v", ok, err)
	}
	// #late appears a moment after the third click: WaitVisible and WaitFor must wait for it.
	if err := p.WaitVisible("#late"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.WaitFor("count 3", `Number(document.getElementById('count').dataset.n) === 3 && 3`, &n); err != nil || n != 3 {
		t.Fatalf("WaitFor value = %d, %v", n, err)
	}

	dir := t.TempDir()
	t.Setenv(EnvArtefacts, dir)
	path := p.Screenshot(t, "phone/counter")
	if filepath.Dir(path) != dir || filepath.Base(path) != "phone_counter.png" {
		t.Fatalf("screenshot path %s, want phone_counter.png in %s", path, dir)
	}
	checkPNG(t, path, Phone.Width)
	if _, err := os.Stat(filepath.Join(dir, ".gitignore")); err != nil {
		t.Errorf("artefacts directory has no .gitignore: %v", err)
	}
	if err := p.Resize(Desktop); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, p.Screenshot(t, "desktop-counter"), Desktop.Width)
}

func checkPNG(t *testing.T, path string, width int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if w := img.Bounds().Dx(); w != width {
		t.Errorf("%s is %d px wide, want the viewport's %d", path, w, width)
	}
}

func TestWaitForTimesOut(t *testing.T) {
	b := Start(t)
	srv := newSite(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p, err := b.Page(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	err = p.WaitForWithin(300*time.Millisecond, "a condition that never holds", `document.getElementById('count').dataset.n === '99'`, nil)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "never holds") {
		t.Fatalf("err = %v, want ErrTimeout naming the condition", err)
	}
	// Ending the page's context closes the tab: actions then fail instead of hanging.
	cancel()
	if err := p.Click("#inc"); err == nil {
		t.Fatal("click on a closed page succeeded")
	}
}

func TestAttackerFraming(t *testing.T) {
	b := Start(t)
	srv := newSite(t)
	evil := NewAttacker(t)
	p := b.MustPage(t)

	res, err := evil.Frame(p, srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if res.Loaded {
		t.Fatalf("a page with X-Frame-Options DENY and frame-ancestors 'none' was framed: %+v", res)
	}
	// The control: the same site's page without those headers does load in the frame, so
	// the check above is not blind.
	res, err = evil.Frame(p, srv.URL+"/open")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Loaded {
		t.Fatalf("an unprotected page was reported blocked: %+v", res)
	}
}

func TestAttackerPost(t *testing.T) {
	b := Start(t)
	srv := newSite(t)
	evil := NewAttacker(t)
	p := b.MustPage(t)
	// The victim first visits the site and gets its SameSite=Strict session cookie.
	if err := p.Navigate(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	res, err := evil.Post(p, srv.URL+"/api", "text/plain", `{"x":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusForbidden || (res.Body != "" && !strings.Contains(res.Body, "csrf")) {
		t.Fatalf("cross-site POST answer = %+v, want 403 csrf", res)
	}
	// With Cross-Origin-Resource-Policy the page gets no answer at all (its fetch fails);
	// the network log still has the status.
	res, err = evil.Post(p, srv.URL+"/api?corp=1", "text/plain", `{"x":2}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusForbidden || res.Blocked == "" {
		t.Fatalf("cross-site POST to a CORP same-origin answer = %+v, want 403 and a blocked reason", res)
	}
	posts := srv.postHeaders()
	if len(posts) != 2 {
		t.Fatalf("site got %d POSTs, want 2", len(posts))
	}
	if o := posts[0].Get("Origin"); o != evil.URL {
		t.Errorf("Origin = %q, want the attacker's %q", o, evil.URL)
	}
	if c := posts[0].Get("Cookie"); strings.Contains(c, "s3cret") {
		t.Errorf("the SameSite=Strict cookie went with a cross-site POST: %q", c)
	}
}

// TestStartWithoutBrowser runs the test binary again with a browser path that does not
// exist: without CI the browser test is skipped, with CI=true it fails.
func TestStartWithoutBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("Start skips under -short before looking for the browser")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestChildStart$", "-test.v")
		cmd.Env = append(os.Environ(), envChild+"=1", EnvChromium+"=/nonexistent/chromium", "CI="+ci)
		out, err := cmd.CombinedOutput()
		switch ci {
		case "":
			if err != nil || !strings.Contains(string(out), "--- SKIP: TestChildStart") {
				t.Errorf("without CI: err=%v, want a skip:\n%s", err, out)
			}
		default:
			if err == nil || !strings.Contains(string(out), "--- FAIL: TestChildStart") || !strings.Contains(string(out), "required when CI=true") {
				t.Errorf("with CI=true: err=%v, want a failure:\n%s", err, out)
			}
		}
	}
}

const envChild = "BROWSERTEST_CHILD"

func TestChildStart(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("only run by TestStartWithoutBrowser")
	}
	Start(t)
	t.Error("Start returned without a browser")
}
