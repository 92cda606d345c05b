package diag

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Planted secrets: no answer may contain any of them.
const (
	testSerial    = "SN100200"
	testDevice    = "dev-7f3a"
	adminPassword = "Adm1n-S3cret-4711"
	cardPAN       = "4111111111111111"
)

var t0 = time.Unix(1_780_000_000, 0)

// clock is the auth store's settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeTerminal is the running agent, at the innermost level: it records the actions run and
// answers with canned results.
type fakeTerminal struct {
	mu      sync.Mutex
	acts    []string
	params  []json.RawMessage
	actors  []string // ActorFrom of each action's context
	bundles int
	// bundleErr fails the bundle before anything is written.
	bundleErr error
}

func (f *fakeTerminal) Status(context.Context) Status {
	return Status{Time: t0, Identity: Identity{Serial: testSerial, DeviceID: testDevice, Model: "WPOS-3", Board: "sim"},
		Agent:    AgentStatus{Version: "1.8.0", Slot: "a", Target: "linux/arm64"},
		TMS:      TMSStatus{Connected: true, Broker: "mqtts://tms.example:8883"},
		Hardware: []Device{{Name: "printer", Kind: "printer", State: "ok"}},
		OTA:      OTAStatus{Slot: "a", Stage: "downloading", Progress: 42},
		Keys:     []KeySlot{{Role: "pin", KCV: "A1B2C3", Alg: "tdes"}}}
}

func (f *fakeTerminal) History() []Sample {
	return []Sample{{Time: t0, CPUPercent: 3.5, RSSBytes: 30 << 20}, {Time: t0.Add(10 * time.Second), CPUPercent: 4, RSSBytes: 31 << 20}}
}

func (f *fakeTerminal) Events(n int) []EventLine {
	return []EventLine{{Time: t0, Kind: "hw.paperLow", Fields: map[string]any{"device": "printer"}}}[:min(n, 1)]
}

func (f *fakeTerminal) Logs(n int) []string { return []string{"level=INFO msg=started"}[:min(n, 1)] }

func (f *fakeTerminal) Act(ctx context.Context, action string, params json.RawMessage, _ func(int)) (any, error) {
	f.mu.Lock()
	f.acts = append(f.acts, action)
	f.params = append(f.params, params)
	f.actors = append(f.actors, ActorFrom(ctx))
	f.mu.Unlock()
	switch action {
	case ActSelfTest:
		return SelfTestResult{OK: false, Results: []DeviceResult{{Device: "printer", Kind: "printer", OK: true},
			{Device: "pinpad", Kind: "pinpad", OK: false, Detail: "no answer"}}}, errors.New("self-test failed: pinpad")
	case ActPrintTest:
		return nil, nil
	case ActCardTest:
		var p struct {
			TimeoutSec int `json:"timeoutSec"`
		}
		if len(params) > 0 {
			if err := json.Unmarshal(params, &p); err != nil || p.TimeoutSec < 0 {
				return nil, &ParamError{Reason: "timeoutSec must be a positive number"}
			}
		}
		if p.TimeoutSec > 60 {
			// A card that never comes: the request's context is what ends the wait.
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return CardTestResult{PAN: cardPAN[:6] + "******" + cardPAN[12:], EntryMode: "chip"}, nil
	case ActEchoHost:
		return EchoResult{RTTMs: 12}, nil
	case ActDrawerTest:
		// A board without a cash drawer.
		return nil, ErrUnknownAction
	case ActParamsSet:
		return map[string]string{"applied": "now"}, nil
	}
	return nil, nil
}

func (f *fakeTerminal) Bundle(_ context.Context, w io.Writer) error {
	f.mu.Lock()
	f.bundles++
	err := f.bundleErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	if _, err := zw.Write([]byte("status.json\n")); err != nil {
		return err
	}
	return zw.Close()
}

func (f *fakeTerminal) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.acts...)
}

// env is a Server on a real auth.Store and audit.Log over a temporary database.
type env struct {
	t      *testing.T
	dir    string
	db     *store.DB
	commit *store.Committer
	clk    *clock
	term   *fakeTerminal
	keys   tmsproto.Sign1Keys
	priv   ed25519.PrivateKey
	pmu    sync.Mutex
	policy auth.Policy
	audit  *audit.Log
	auth   *auth.Store
	srv    atomic.Pointer[Server] // swapped by reopen
	ts     *httptest.Server
}

const kid = "tms-1"

func newEnv(t *testing.T) *env { return newEnvTLS(t, false) }

func newEnvTLS(t *testing.T, tlsOn bool) *env {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tmsproto.NewSign1Keys(map[string]ed25519.PublicKey{kid: pub})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), clk: &clock{t: t0}, term: &fakeTerminal{}, keys: keys, priv: priv,
		policy: auth.Policy{MaxFailures: 3, Lockout: 10 * time.Minute, IdleTimeout: 15 * time.Minute, AdminPassword: true}}
	e.open()
	t.Cleanup(e.close)
	// The handler is looked up on each request so reopen can swap the server.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.srv.Load().Handler().ServeHTTP(w, r) })
	if tlsOn {
		e.ts = httptest.NewTLSServer(handler)
	} else {
		e.ts = httptest.NewServer(handler)
	}
	t.Cleanup(e.ts.Close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.commit = db, store.NewCommitter(db)
	if e.audit, err = audit.Open(audit.Options{DB: db, Commit: e.commit}); err != nil {
		e.t.Fatal(err)
	}
	e.auth, err = auth.Open(auth.Options{DB: db, Commit: e.commit, Keys: e.keys, IDs: []string{testSerial, testDevice},
		Policy: e.currentPolicy, Audit: e.audit, Now: e.clk.now,
		Admin: func(_ context.Context, pw string) error {
			if pw != adminPassword {
				return errors.New("operator: bad credentials")
			}
			return nil
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv.Store(New(Options{Terminal: e.term, Auth: e.auth, Audit: e.audit, Policy: e.currentPolicy}))
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	e.commit.Close()
	_ = e.db.Close()
	e.db = nil
}

// reopen is a reboot: a new auth store and audit log on the same database.
func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) currentPolicy() auth.Policy {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	return e.policy
}

func (e *env) setPolicy(edit func(p *auth.Policy)) {
	e.pmu.Lock()
	edit(&e.policy)
	e.pmu.Unlock()
}

// token issues a technician token valid now for this terminal, edited by the caller.
func (e *env) token(role auth.Role, edit ...func(c *auth.Claims)) string {
	e.t.Helper()
	c := auth.Claims{ID: "tok-" + string(role), Technician: "tech42", Name: "Aigerim S.", Role: role,
		Terminals: []string{testSerial}, IssuedAt: t0.Add(-time.Hour).Unix(), Expires: t0.Add(7 * time.Hour).Unix()}
	for _, f := range edit {
		f(&c)
	}
	tok, err := auth.IssueToken(e.priv, kid, c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client is a browser-like caller: a cookie jar, the session's CSRF token, and every answer
// kept for the secrets check.
type client struct {
	e    *env
	hc   *http.Client
	csrf string
	mu   sync.Mutex
	seen [][]byte
}

func (e *env) client() *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	// A copy: httptest hands out one *http.Client, and each client needs its own jar.
	hc := *e.ts.Client()
	hc.Jar = jar
	return &client{e: e, hc: &hc}
}

// answer is one response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", a.status, a.body, err)
	}
}

// code is the error code of an error answer.
func (a answer) code(t *testing.T) string {
	t.Helper()
	var b errorBody
	a.json(t, &b)
	return b.Error
}

// do sends a request; hdr may set or (with "") remove headers. POSTs carry the CSRF token
// and a JSON content type unless hdr says otherwise.
func (c *client) do(method, path string, body string, hdr map[string]string) answer {
	c.e.t.Helper()
	req, err := http.NewRequest(method, c.e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		c.e.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		if c.csrf != "" {
			req.Header.Set(HeaderCSRF, c.csrf)
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
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	c.mu.Lock()
	var hb bytes.Buffer
	for k, vs := range resp.Header {
		if k == "Set-Cookie" {
			continue // the session id belongs there
		}
		hb.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	c.seen = append(c.seen, hb.Bytes(), b)
	c.mu.Unlock()
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *client) get(path string) answer { return c.do(http.MethodGet, path, "", nil) }
func (c *client) post(path, body string) answer {
	return c.do(http.MethodPost, path, body, nil)
}

// login signs in with a login body and keeps the CSRF token.
func (c *client) login(body string) (answer, SessionInfo) {
	c.e.t.Helper()
	a := c.post("/api/login", body)
	var s SessionInfo
	if a.status == http.StatusOK {
		a.json(c.e.t, &s)
		c.csrf = s.CSRF
	}
	return a, s
}

func (c *client) loginToken(tok string) SessionInfo {
	c.e.t.Helper()
	a, s := c.login(`{"token":"` + tok + `"}`)
	if a.status != http.StatusOK {
		c.e.t.Fatalf("login: %d %s", a.status, a.body)
	}
	return s
}

// entries is the whole audit log.
func (e *env) entries() []audit.Entry {
	e.t.Helper()
	es, err := e.audit.Recent(10000)
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// find is the audit entries of one action.
func (e *env) find(action string) []audit.Entry {
	var out []audit.Entry
	for _, en := range e.entries() {
		if en.Action == action {
			out = append(out, en)
		}
	}
	return out
}

// apiRoutes are every API route with its method.
var apiRoutes = []struct{ method, path string }{
	{"POST", "/api/logout"}, {"GET", "/api/session"}, {"GET", "/api/status"}, {"GET", "/api/history"},
	{"GET", "/api/events"}, {"GET", "/api/logs"}, {"GET", "/api/audit"}, {"GET", "/api/bundle"},
}

// actionRoutes adds one POST per action.
func allRoutes() []struct{ method, path string } {
	rs := append([]struct{ method, path string }(nil), apiRoutes...)
	for _, a := range Actions {
		rs = append(rs, struct{ method, path string }{"POST", "/api/actions/" + a})
	}
	return rs
}
