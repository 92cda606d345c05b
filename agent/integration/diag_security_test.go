package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/operator"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/browsertest"
	"github.com/posagent/posagent/keystore/pinblock"
)

// The diagnostics port of the real agent under attack: no access without signing in, a
// read-only technician cannot act, bad tokens and guessing are refused up to a lock-out that
// survives a restart, nothing secret in any answer or the bundle, the audit chain verifies
// (in the terminal and as uplinked) and an edit of the database is found. The browser half
// checks what only a browser enforces: cross-site requests and framing.

// The planted secrets of this file: everything a leak would show.
const (
	secAdminPassword = "8406317259"          // the operator table takes 4 to 12 digits
	secPAN           = "6228480000000012344" // the unionpay-debit card of the card emulator
	secPIN           = "123456"              // what the PIN pad emulator types
)

// secretSet is the forms each planted secret could leak in.
type secretSet map[string][]string

func (s secretSet) add(name string, forms ...string) { s[name] = append(s[name], forms...) }

func (s secretSet) addBytes(name string, b []byte) {
	s.add(name, hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
}

// check reports every secret found in data (what: where it was).
func (s secretSet) check(t testing.TB, what string, data []byte) {
	t.Helper()
	for name, forms := range s {
		for _, f := range forms {
			if f != "" && bytes.Contains(data, []byte(f)) {
				t.Errorf("%s contains the %s (%.12s…)", what, name, f)
			}
		}
	}
}

// diagPayRig is the whole paying terminal (host simulator, PIN pad, card reader, printer,
// keys, licence, configuration: newPayRig) with its diagnostics port on.
type diagPayRig struct {
	*payRig
	d *diagAgent
}

func newDiagPayRig(t *testing.T, device string) *diagPayRig {
	t.Helper()
	var d *diagAgent
	r := newPayRig(t, device, rigOptions{start: func(e *env, extra string) *agent.Agent {
		d = e.startDiagAgent(extra)
		return d.a
	}})
	return &diagPayRig{payRig: r, d: d}
}

// restart stops the agent and starts it again on the same data; edit runs in between with
// the database closed.
func (r *diagPayRig) restart(t *testing.T, edit func(dbPath string)) {
	t.Helper()
	r.d.stop()
	if edit != nil {
		edit(r.d.a.DataDir() + "/posagent.db")
	}
	r.d = r.e.startDiagAgent(r.extra)
}

// everyRoute is each API route with the method it takes.
func everyRoute() [][2]string {
	routes := [][2]string{{"POST", "/api/logout"}, {"GET", "/api/session"}, {"GET", "/api/status"},
		{"GET", "/api/history"}, {"GET", "/api/events?n=10"}, {"GET", "/api/logs?n=10"},
		{"GET", "/api/audit?n=10"}, {"GET", "/api/bundle"}}
	for _, a := range diag.Actions {
		routes = append(routes, [2]string{"POST", "/api/actions/" + a})
	}
	return routes
}

// securityHeaders checks the headers every answer of the port must carry.
func securityHeaders(t testing.TB, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"X-Frame-Options":              "DENY",
		"X-Content-Type-Options":       "nosniff",
		"Referrer-Policy":              "no-referrer",
		"Cache-Control":                "no-store",
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Resource-Policy": "same-origin",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: CSP %q lacks %s", what, csp, d)
		}
	}
}

func TestDiagSecurityAPI(t *testing.T) {
	const dev = "IT-DIAG-SEC-1"
	r := newDiagPayRig(t, dev)
	e := r.e
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The administrator's password, changed from the factory one as a terminal requires.
	ops := r.d.a.Operators()
	if sess, err := ops.SignOn(ctx, operator.AdminCode, "12345678"); !errors.Is(err, operator.ErrMustChange) {
		t.Fatalf("admin first sign-on: %v", err)
	} else if err := ops.SetPassword(ctx, sess, operator.AdminCode, "12345678", secAdminPassword); err != nil {
		t.Fatal(err)
	}
	// A payment, so a card number and a PIN block went through the terminal.
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	if txn, err := r.d.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 4321}); err != nil || txn.State != payment.StateApproved {
		t.Fatalf("purchase: %+v %v", txn, err)
	}
	r.reader.Remove()

	service := e.techToken(t, auth.Claims{ID: "sec-service", Technician: "tech-1", Role: auth.RoleService})
	readOnly := e.techToken(t, auth.Claims{ID: "sec-ro", Technician: "tech-2", Role: auth.RoleReadOnly})
	block, err := pinblock.Format0(secPIN, secPAN)
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretSet{}
	secrets.add("admin password", secAdminPassword)
	secrets.add("TMS password", e.broker.DevicePassword(dev))
	secrets.addBytes("command private key", e.key.Key)
	secrets.addBytes("command private key seed", e.key.Key.Seed())
	secrets.add("service token", service, strings.TrimPrefix(service, auth.TokenPrefix))
	secrets.add("read-only token", readOnly, strings.TrimPrefix(readOnly, auth.TokenPrefix))
	secrets.addBytes("master key (kek0)", r.kek)
	secrets.add("card number", secPAN)
	secrets.addBytes("PIN block (clear, format 0)", block[:])

	// Without a session every route is refused, and nothing is run.
	anon := newAPIClient(t, r.d.url)
	for _, rt := range everyRoute() {
		a := anon.do(rt[0], rt[1], nil, nil)
		if a.Status != http.StatusUnauthorized || a.Code != "unauthenticated" {
			t.Errorf("%s %s without a session: %d %q", rt[0], rt[1], a.Status, a.Code)
		}
		securityHeaders(t, rt[0]+" "+rt[1], a.Header)
	}
	for _, path := range []string{"/", "/static/app.js", "/static/app.css", "/static/icon.svg", "/no/such/page"} {
		a := anon.do(http.MethodGet, path, nil, nil)
		securityHeaders(t, "GET "+path, a.Header)
		secrets.check(t, "GET "+path, a.Body)
	}

	// Bad tokens: expired, forged (another key, same key id), for another terminal.
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.IssueToken(otherKey, e.key.ID, auth.Claims{ID: "forged", Technician: "tech-1", Role: auth.RoleService,
		Terminals: []string{dev}, IssuedAt: time.Now().Add(-time.Minute).Unix(), Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, token, code string
	}{
		{"expired", e.techToken(t, auth.Claims{ID: "sec-old", Technician: "tech-1", Role: auth.RoleService,
			IssuedAt: time.Now().Add(-2 * time.Hour).Unix(), Expires: time.Now().Add(-time.Hour).Unix()}), "token_expired"},
		{"forged", forged, "token_invalid"},
		{"another terminal", e.techToken(t, auth.Claims{ID: "sec-other", Technician: "tech-1", Role: auth.RoleService,
			Terminals: []string{"SOMEONE-ELSE"}}), "token_wrong_terminal"},
	}
	for _, b := range bad {
		c := newAPIClient(t, r.d.url)
		if a := c.login(map[string]string{"token": b.token}); a.Status != http.StatusUnauthorized || a.Code != b.code {
			t.Errorf("%s token: %d %q %s, want 401 %s", b.name, a.Status, a.Code, a.Body, b.code)
		}
		if a := c.do(http.MethodGet, "/api/status", nil, nil); a.Status != http.StatusUnauthorized {
			t.Errorf("%s token gave a session: %d", b.name, a.Status)
		}
	}

	// Read-only: sees the status, may run nothing.
	ro := newAPIClient(t, r.d.url)
	if a := ro.login(map[string]string{"token": readOnly}); a.Status != http.StatusOK {
		t.Fatalf("read-only login: %d %s", a.Status, a.Body)
	} else {
		var s struct {
			Role    string   `json:"role"`
			Actions []string `json:"actions"`
		}
		if err := json.Unmarshal(a.Body, &s); err != nil || s.Role != string(auth.RoleReadOnly) || len(s.Actions) != 0 {
			t.Errorf("read-only session %s (%v)", a.Body, err)
		}
	}
	if a := ro.do(http.MethodGet, "/api/status", nil, nil); a.Status != http.StatusOK {
		t.Errorf("read-only status: %d", a.Status)
	}
	for _, act := range diag.Actions {
		if act == diag.ActBundle {
			if a := ro.do(http.MethodGet, "/api/bundle", nil, nil); a.Status != http.StatusForbidden || a.Code != "forbidden" {
				t.Errorf("read-only bundle: %d %q", a.Status, a.Code)
			}
			continue
		}
		if a, _ := ro.act(act, map[string]any{}); a.Status != http.StatusForbidden || a.Code != "forbidden" {
			t.Errorf("read-only %s: %d %q", act, a.Status, a.Code)
		}
	}

	// The service technician: CSRF header missing or wrong, or another Origin → 403, nothing run.
	svc := newAPIClient(t, r.d.url)
	if a := svc.login(map[string]string{"token": service}); a.Status != http.StatusOK {
		t.Fatalf("service login: %d %s", a.Status, a.Body)
	} else {
		secrets.check(t, "the login answer", a.Body)
	}
	before := auditCount(t, r.d.a.Audit(), "test.buzzer")
	for name, hdr := range map[string]map[string]string{
		"no CSRF header":    {"X-CSRF-Token": ""},
		"a wrong CSRF":      {"X-CSRF-Token": "AAAA" + svc.csrf[4:]},
		"another Origin":    {"Origin": "http://evil.example"},
		"a cross-site post": {"Sec-Fetch-Site": "cross-site"},
	} {
		if a := svc.do(http.MethodPost, "/api/actions/test.buzzer", map[string]any{}, hdr); a.Status != http.StatusForbidden || a.Code != "csrf" {
			t.Errorf("%s: %d %q", name, a.Status, a.Code)
		}
	}
	if n := auditCount(t, r.d.a.Audit(), "test.buzzer"); n != before {
		t.Errorf("a refused request ran test.buzzer (%d audit entries, had %d)", n, before)
	}

	// Actions and every answer: nothing secret anywhere.
	for _, act := range []string{diag.ActSelfTest, diag.ActEchoTMS, diag.ActEchoHost, diag.ActBuzzerTest} {
		a, res := svc.act(act, map[string]any{})
		if a.Status != http.StatusOK || !res.OK {
			t.Errorf("%s: %d %s", act, a.Status, a.Body)
		}
		secrets.check(t, "the answer of "+act, a.Body)
	}
	// (tmsBroker, not logLevel: this in-process agent's logger is the test's, with no level to set.)
	if a, res := svc.act(diag.ActParamsSet, map[string]any{"name": "tmsBroker", "value": e.broker.URL()}); a.Status != http.StatusOK || !res.OK {
		t.Errorf("params.set: %d %s", a.Status, a.Body)
	}
	for _, path := range []string{"/api/session", "/api/status", "/api/history", "/api/events?n=1000", "/api/logs?n=1000", "/api/audit?n=1000"} {
		a := svc.do(http.MethodGet, path, nil, nil)
		if a.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, a.Status, a.Body)
		}
		securityHeaders(t, "GET "+path, a.Header)
		secrets.check(t, "GET "+path, a.Body)
	}
	var st diag.Status
	if a := svc.do(http.MethodGet, "/api/status", nil, nil); json.Unmarshal(a.Body, &st) != nil || st.Host.State != "normal" || len(st.Keys) == 0 {
		t.Errorf("status of a paying terminal: host %+v keys %+v", st.Host, st.Keys)
	}
	bundle := svc.do(http.MethodGet, "/api/bundle", nil, nil)
	if bundle.Status != http.StatusOK || bundle.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("bundle: %d %s", bundle.Status, bundle.Header.Get("Content-Type"))
	}
	secrets.check(t, "the bundle (compressed)", bundle.Body)
	files := untar(t, bundle.Body)
	if len(files) < 3 {
		t.Errorf("bundle has %d files", len(files))
	}
	for name, data := range files {
		secrets.check(t, "bundle file "+name, data)
	}

	// The chain verifies in the terminal and as uplinked, record by record from the first.
	_, res := svc.act(diag.ActAuditVerify, nil)
	var rep struct {
		Count     int    `json:"count"`
		Last      uint64 `json:"last"`
		BrokenSeq uint64 `json:"brokenSeq"`
	}
	if err := json.Unmarshal(res.Result, &rep); err != nil || !res.OK || rep.Count == 0 || rep.BrokenSeq != 0 {
		t.Fatalf("audit.verify: %+v %s (%v)", res, res.Result, err)
	}
	waitFor(t, 30*time.Second, "the audit records uplinked", func() bool {
		return uint64(len(e.stream(tmsproto.StreamLogAudit))) >= rep.Last
	})
	ups := e.stream(tmsproto.StreamLogAudit)
	sort.Slice(ups, func(i, j int) bool { return ups[i].Seq < ups[j].Seq })
	var v audit.Verifier
	var actions []string
	for _, env := range ups {
		ent, err := v.Next(env.Body)
		if err != nil {
			t.Fatalf("uplinked record seq %d: %v", env.Seq, err)
		}
		actions = append(actions, ent.Action)
		secrets.check(t, fmt.Sprintf("uplinked audit entry %d", ent.Seq), env.Body)
	}
	for _, want := range []string{"diag.login", "selftest", "params.set", "diag.forbidden"} {
		if !slices.Contains(actions, want) {
			t.Errorf("uplinked audit has no %s: %v", want, actions)
		}
	}
	// A replayed record is refused.
	if len(ups) > 1 {
		if _, err := v.Next(ups[1].Body); err == nil {
			t.Error("a replayed audit record verified")
		}
	}

	// An entry edited in the database while the agent is stopped is found at its seq.
	var edited uint64
	r.restart(t, func(dbPath string) { edited = editAuditEntry(t, dbPath, "selftest") })
	admin := newAPIClient(t, r.d.url)
	if a := admin.login(map[string]string{"password": secAdminPassword}); a.Status != http.StatusOK {
		t.Fatalf("admin password login after restart: %d %s", a.Status, a.Body)
	}
	if _, res := admin.act(diag.ActAuditVerify, nil); res.OK {
		t.Fatalf("audit.verify passed an edited chain: %s", res.Result)
	} else if err := json.Unmarshal(res.Result, &rep); err != nil || rep.BrokenSeq != edited {
		t.Errorf("audit.verify of an edited chain: %+v %s (%v); edited seq %d", res, res.Result, err, edited)
	}

	// Guessing: after MaxFailures (default 5) bad tries, even the good token is refused, and
	// a restart does not lift the lock-out.
	for i := range 5 {
		c := newAPIClient(t, r.d.url)
		a := c.login(map[string]string{"password": fmt.Sprintf("%08d", i)})
		// The guess that reaches the limit may already be answered with the lock-out.
		if (a.Status != http.StatusUnauthorized || a.Code != "bad_credentials") && (i < 4 || a.Code != "locked_out") {
			t.Fatalf("guess %d: %d %q", i, a.Status, a.Code)
		}
	}
	locked := func(when string) {
		c := newAPIClient(t, r.d.url)
		a := c.login(map[string]string{"token": service})
		var body struct {
			Until time.Time `json:"until"`
		}
		if a.Status != http.StatusLocked || a.Code != "locked_out" || json.Unmarshal(a.Body, &body) != nil || !body.Until.After(time.Now()) {
			t.Errorf("good token %s: %d %s, want 423 locked_out with until", when, a.Status, a.Body)
		}
	}
	locked("during the lock-out")
	r.restart(t, nil)
	locked("after a restart")
}

// auditCount counts the audit entries of action.
func auditCount(t testing.TB, l *audit.Log, action string) int {
	t.Helper()
	es, err := l.Recent(10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Action == action {
			n++
		}
	}
	return n
}

// editAuditEntry changes one byte of the body of the last entry of action in the audit
// bucket (as someone with the database file would: the stored hash left as it was) and
// returns its seq.
func editAuditEntry(t testing.TB, dbPath, action string) uint64 {
	t.Helper()
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq uint64
	err = db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte(audit.BucketName))
		if root == nil {
			return errors.New("no audit bucket")
		}
		entries := root.Bucket([]byte("e"))
		if entries == nil {
			return errors.New("no entries bucket")
		}
		c := entries.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(v) <= audit.HashSize {
				continue
			}
			i := bytes.Index(v[audit.HashSize:], []byte(action))
			if i < 0 {
				continue
			}
			i += audit.HashSize
			nv := bytes.Clone(v)
			nv[i] ^= 0x20 // "selftest" → "Selftest": a plausible-looking edit
			seq = beUint64(k)
			return entries.Put(bytes.Clone(k), nv)
		}
		return fmt.Errorf("no %s entry", action)
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// untar reads a gzip'd tar into file name → content.
func untar(t testing.TB, data []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("bundle: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("bundle: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("bundle %s: %v", h.Name, err)
		}
		out[h.Name] = b
	}
}

// In a real browser: a page on another site can neither act through the technician's
// session nor sign in, cannot frame the console, and the console as rendered holds no secret.
func TestDiagSecurityBrowser(t *testing.T) {
	b := browsertest.Start(t)
	const dev = "IT-DIAG-SEC-2"
	e := newEnv(t, dev)
	d := e.startDiagAgent("")
	waitFor(t, 20*time.Second, "online", func() bool { return e.onlineVersion() != "" })
	token := e.techToken(t, auth.Claims{ID: "sec-browser", Technician: "tech-9", Role: auth.RoleService})
	secrets := secretSet{}
	secrets.add("TMS password", e.broker.DevicePassword(dev))
	secrets.addBytes("command private key", e.key.Key)
	secrets.add("token", token, strings.TrimPrefix(token, auth.TokenPrefix))

	// The technician is signed in on the console in one tab...
	p := b.MustPage(t)
	consoleLogin(t, p, d.url, token)
	if err := p.WaitFor("TMS connected", `document.getElementById('tms-state').textContent === 'connected'`, nil); err != nil {
		t.Fatal(err)
	}
	// ...while another tab shows a malicious page on another site.
	evil := browsertest.NewAttacker(t)
	q := b.MustPage(t)
	before := auditCount(t, d.a.Audit(), "test.buzzer")
	res, err := evil.Post(q, d.url+"/api/actions/test.buzzer", "text/plain", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusForbidden {
		t.Errorf("cross-site action: %+v, want 403", res)
	}
	res, err = evil.Post(q, d.url+"/api/login", "text/plain", `{"token":"`+token+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusForbidden {
		t.Errorf("cross-site login: %+v, want 403", res)
	}
	if n := auditCount(t, d.a.Audit(), "test.buzzer"); n != before {
		t.Errorf("the cross-site request ran test.buzzer")
	}
	fr, err := evil.Frame(q, d.url+"/")
	if err != nil {
		t.Fatal(err)
	}
	if fr.Loaded {
		t.Errorf("the console was framed by another site: %+v", fr)
	}
	t.Logf("framing: %+v", fr)

	// The console's own session still works (the attack did not sign it out) and what it
	// shows, events, logs and audit included, holds no secret.
	if err := p.Click(`a[href="#sec-logs"]`); err != nil {
		t.Fatal(err)
	}
	if err := p.Click("#logs-refresh"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("the audit list", `document.querySelectorAll('#audit-list li').length > 0`, nil); err != nil {
		t.Fatal(err)
	}
	var html string
	if err := p.Eval(`document.documentElement.outerHTML`, &html); err != nil {
		t.Fatal(err)
	}
	secrets.check(t, "the rendered console", []byte(html))
	p.Screenshot(t, "diag-console-security-desktop")
}
