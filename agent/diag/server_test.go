package diag

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/store"
)

func TestNoAccessWithoutSession(t *testing.T) {
	e := newEnv(t)
	anon := e.client()
	forged := e.client()
	for _, rt := range allRoutes() {
		a := anon.do(rt.method, rt.path, "{}", nil)
		if a.status != http.StatusUnauthorized || a.code(t) != codeUnauthenticated {
			t.Errorf("%s %s without a session: %d %s", rt.method, rt.path, a.status, a.body)
		}
		b := forged.do(rt.method, rt.path, "{}", map[string]string{"Cookie": CookieName + "=bm90LWEtc2Vzc2lvbg"})
		if b.status != http.StatusUnauthorized {
			t.Errorf("%s %s with a made-up cookie: %d %s", rt.method, rt.path, b.status, b.body)
		}
	}
	if got := e.term.actions(); len(got) != 0 {
		t.Fatalf("the terminal ran %v for nobody", got)
	}
	if e.term.bundles != 0 {
		t.Fatal("a bundle was made for nobody")
	}
}

func TestLoginTokenThenRead(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	a, s := c.login(`{"token":"` + e.token(auth.RoleService) + `"}`)
	if a.status != http.StatusOK {
		t.Fatalf("login: %d %s", a.status, a.body)
	}
	if s.Technician != "tech42" || s.Name != "Aigerim S." || s.Role != "service" || s.Method != "token" || s.CSRF == "" {
		t.Fatalf("session %+v", s)
	}
	if !slices.Equal(s.Actions, Actions) {
		t.Fatalf("service may run %v, want every action", s.Actions)
	}
	if s.IdleTimeoutSec != 900 || s.PollIntervalMs != 1000 || !s.Expires.Equal(t0.Add(7*time.Hour)) {
		t.Fatalf("idle %d poll %d expires %v", s.IdleTimeoutSec, s.PollIntervalMs, s.Expires)
	}
	ck := a.header.Get("Set-Cookie")
	for _, want := range []string{CookieName + "=", "Path=/", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(ck, want) {
			t.Errorf("cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("cookie %q is Secure over plain HTTP: the browser would drop it", ck)
	}

	var st Status
	a = c.get("/api/status")
	a.json(t, &st)
	if a.status != http.StatusOK || st.Identity.Serial != testSerial || !st.TMS.Connected || st.OTA.Progress != 42 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	var again SessionInfo
	c.get("/api/session").json(t, &again)
	if again.CSRF != s.CSRF || again.Technician != s.Technician {
		t.Fatalf("session after reload %+v, want %+v", again, s)
	}
	var hist []Sample
	c.get("/api/history").json(t, &hist)
	var ev []EventLine
	c.get("/api/events?n=5").json(t, &ev)
	var logs []string
	c.get("/api/logs").json(t, &logs)
	if len(hist) != 2 || len(ev) != 1 || ev[0].Kind != "hw.paperLow" || len(logs) != 1 {
		t.Fatalf("history %v events %v logs %v", hist, ev, logs)
	}
	var es []audit.Entry
	c.get("/api/audit?n=1").json(t, &es)
	if len(es) != 1 || es[0].Action != "diag.login" || es[0].Actor != "tech42" || es[0].Outcome != audit.OutcomeOK {
		t.Fatalf("audit %+v", es)
	}
	for _, q := range []string{"n=0", "n=-1", "n=x"} {
		if a := c.get("/api/events?" + q); a.status != http.StatusBadRequest {
			t.Errorf("events?%s: %d", q, a.status)
		}
	}
}

func TestLoginPassword(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	a, s := c.login(`{"password":"` + adminPassword + `"}`)
	if a.status != http.StatusOK || s.Technician != auth.AdminTechnician || s.Role != "service" || s.Method != "password" {
		t.Fatalf("admin login: %d %s", a.status, a.body)
	}
	if a := c.post("/api/actions/test.print", ""); a.status != http.StatusOK {
		t.Fatalf("admin test print: %d %s", a.status, a.body)
	}

	bad, _ := e.client().login(`{"password":"wrong"}`)
	if bad.status != http.StatusUnauthorized || bad.code(t) != codeBadCredentials {
		t.Fatalf("wrong password: %d %s", bad.status, bad.body)
	}
	e.setPolicy(func(p *auth.Policy) { p.AdminPassword = false })
	off, _ := e.client().login(`{"password":"` + adminPassword + `"}`)
	if off.status != http.StatusUnauthorized || off.code(t) != codeAdminPasswordOff {
		t.Fatalf("admin password off: %d %s", off.status, off.body)
	}
}

func TestLoginBodyRefused(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, body := range []string{`{}`, `{"token":"a","password":"b"}`, `{"user":"x"}`, `[]`, `{"token":1}`, `{"token":"a"} {}`} {
		a, _ := c.login(body)
		if a.status != http.StatusBadRequest || a.code(t) != codeBadRequest {
			t.Errorf("login %s: %d %s", body, a.status, a.body)
		}
	}
	a := c.do("POST", "/api/login", `token=pat1.x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if a.status != http.StatusBadRequest {
		t.Errorf("form login: %d %s", a.status, a.body)
	}
	big := `{"token":"` + strings.Repeat("A", MaxBody) + `"}`
	if a, _ := c.login(big); a.status != http.StatusRequestEntityTooLarge || a.code(t) != codeTooLarge {
		t.Errorf("huge login: %d %s", a.status, a.body)
	}
	// Malformed bodies are not login attempts: nothing was checked, nothing counted.
	if _, locked := e.auth.Locked(); locked {
		t.Fatal("malformed bodies locked the port")
	}
}

func TestReadOnlyCannotAct(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	s := c.loginToken(e.token(auth.RoleReadOnly))
	if len(s.Actions) != 0 {
		t.Fatalf("read-only may run %v", s.Actions)
	}
	for _, act := range Actions {
		a := c.post("/api/actions/"+act, `{"id":"x"}`)
		if a.status != http.StatusForbidden || a.code(t) != codeForbidden {
			t.Errorf("read-only %s: %d %s", act, a.status, a.body)
		}
	}
	if a := c.get("/api/bundle"); a.status != http.StatusForbidden || a.code(t) != codeForbidden {
		t.Errorf("read-only bundle: %d %s", a.status, a.body)
	}
	if got := e.term.actions(); len(got) != 0 {
		t.Fatalf("the terminal ran %v for a read-only technician", got)
	}
	if e.term.bundles != 0 {
		t.Fatal("a bundle was made for a read-only technician")
	}
	denied := e.find("diag.forbidden")
	if len(denied) != len(Actions)+1 {
		t.Fatalf("%d forbidden entries, want %d", len(denied), len(Actions)+1)
	}
	for _, en := range denied {
		if en.Outcome != audit.OutcomeDenied || en.Actor != "tech42" || en.Source != audit.SourceDiag {
			t.Fatalf("forbidden entry %+v", en)
		}
	}
	// Reading is every role's.
	if a := c.get("/api/status"); a.status != http.StatusOK {
		t.Fatalf("read-only status: %d", a.status)
	}
}

func TestPolicyPermissions(t *testing.T) {
	e := newEnv(t)
	e.setPolicy(func(p *auth.Policy) {
		p.Permissions = map[auth.Role][]string{auth.RoleReadOnly: {ActEchoHost}, auth.RoleService: {"*"}}
	})
	c := e.client()
	s := c.loginToken(e.token(auth.RoleReadOnly))
	if !slices.Equal(s.Actions, []string{ActEchoHost}) {
		t.Fatalf("actions %v", s.Actions)
	}
	var r ActionResult
	c.post("/api/actions/echo.host", "").json(t, &r)
	if !r.OK {
		t.Fatalf("echo.host allowed by policy: %+v", r)
	}
	if a := c.post("/api/actions/echo.tms", ""); a.status != http.StatusForbidden {
		t.Fatalf("echo.tms: %d", a.status)
	}
}

func TestTokensRefused(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t) // another TMS key: a forgery as far as e is concerned
	e.setPolicy(func(p *auth.Policy) { p.MaxFailures = 100; p.Revoked = map[string]bool{"tok-gone": true} })
	cases := []struct {
		name, token, code string
	}{
		{"expired", e.token(auth.RoleService, func(c *auth.Claims) { c.Expires = t0.Add(-time.Minute).Unix() }), codeTokenExpired},
		{"forged", other.token(auth.RoleService), codeTokenInvalid},
		{"wrong terminal", e.token(auth.RoleService, func(c *auth.Claims) { c.Terminals = []string{"SN999"} }), codeTokenWrongTerminal},
		{"revoked", e.token(auth.RoleService, func(c *auth.Claims) { c.ID = "tok-gone" }), codeTokenRevoked},
		{"garbage", "pat1.AAAA", codeTokenInvalid},
	}
	for _, tc := range cases {
		c := e.client()
		a, _ := c.login(`{"token":"` + tc.token + `"}`)
		if a.status != http.StatusUnauthorized || a.code(t) != tc.code {
			t.Errorf("%s: %d %s, want 401 %s", tc.name, a.status, a.body, tc.code)
		}
		if ck := a.header.Get("Set-Cookie"); ck != "" {
			t.Errorf("%s: a cookie was set: %q", tc.name, ck)
		}
		if st := c.get("/api/status"); st.status != http.StatusUnauthorized {
			t.Errorf("%s: status after a refused login: %d", tc.name, st.status)
		}
		if bytes.Contains(a.body, []byte(tc.token)) {
			t.Errorf("%s: the answer quotes the token", tc.name)
		}
	}
	denied := 0
	for _, en := range e.find("diag.login") {
		if en.Outcome == audit.OutcomeDenied {
			denied++
		}
	}
	if denied != len(cases) {
		t.Fatalf("%d denied logins audited, want %d", denied, len(cases))
	}
}

func TestLockout(t *testing.T) {
	e := newEnv(t) // MaxFailures 3, Lockout 10 min
	good := e.token(auth.RoleService)
	for i := range 3 {
		a, _ := e.client().login(`{"password":"guess"}`)
		want := http.StatusUnauthorized
		if i == 2 {
			want = http.StatusLocked // the failure that reaches the limit locks at once
		}
		if a.status != want {
			t.Fatalf("failure %d: %d %s", i+1, a.status, a.body)
		}
	}
	check := func(when string) {
		t.Helper()
		a, _ := e.client().login(`{"token":"` + good + `"}`)
		var b errorBody
		a.json(t, &b)
		if a.status != http.StatusLocked || b.Error != codeLockedOut || !b.Until.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("%s: good token while locked: %d %s", when, a.status, a.body)
		}
	}
	check("locked")
	if len(e.find("diag.lockout")) != 1 {
		t.Fatal("the lock-out is not audited")
	}
	e.reopen()
	check("after a restart")
	e.clk.add(10*time.Minute + time.Second)
	c := e.client()
	c.loginToken(good)
	if a := c.get("/api/status"); a.status != http.StatusOK {
		t.Fatalf("status after the lock-out: %d", a.status)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"missing", map[string]string{HeaderCSRF: ""}},
		{"wrong", map[string]string{HeaderCSRF: "bm90LXRoZS10b2tlbg"}},
	} {
		for _, path := range []string{"/api/actions/test.print", "/api/actions/audit.verify", "/api/logout"} {
			a := c.do("POST", path, "", tc.hdr)
			if a.status != http.StatusForbidden || a.code(t) != codeCSRF {
				t.Errorf("%s CSRF token on %s: %d %s", tc.name, path, a.status, a.body)
			}
		}
	}
	if got := e.term.actions(); len(got) != 0 {
		t.Fatalf("ran %v without a CSRF token", got)
	}
	if len(e.find(ActAuditVerify)) != 0 || len(e.find("diag.logout")) != 0 {
		t.Fatal("something was done without a CSRF token")
	}
	if a := c.get("/api/status"); a.status != http.StatusOK {
		t.Fatalf("the session did not survive the refused logout: %d", a.status)
	}
	if a := c.post("/api/actions/test.print", ""); a.status != http.StatusOK {
		t.Fatalf("with the token: %d %s", a.status, a.body)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	e := newEnv(t)
	good := e.token(auth.RoleService)
	evil := map[string]string{"Origin": "http://evil.example"}
	cross := map[string]string{"Sec-Fetch-Site": "cross-site"}

	c := e.client()
	for _, h := range []map[string]string{evil, cross, {"Origin": "null"}} {
		a := c.do("POST", "/api/login", `{"token":"`+good+`"}`, h)
		if a.status != http.StatusForbidden || a.code(t) != codeCSRF {
			t.Errorf("login with %v: %d %s", h, a.status, a.body)
		}
	}
	if len(e.find("diag.login")) != 0 {
		t.Fatal("a cross-origin login reached the auth store")
	}

	c.loginToken(good)
	for _, h := range []map[string]string{evil, cross} {
		if a := c.do("POST", "/api/actions/test.print", "", h); a.status != http.StatusForbidden || a.code(t) != codeCSRF {
			t.Errorf("action with %v: %d %s", h, a.status, a.body)
		}
	}
	if got := e.term.actions(); len(got) != 0 {
		t.Fatalf("ran %v from another origin", got)
	}
	same := map[string]string{"Origin": e.ts.URL, "Sec-Fetch-Site": "same-origin"}
	if a := c.do("POST", "/api/actions/test.print", "", same); a.status != http.StatusOK {
		t.Fatalf("same origin: %d %s", a.status, a.body)
	}
}

// wantHeaders are on every answer.
var wantHeaders = map[string]string{
	"Content-Security-Policy":      csp,
	"X-Frame-Options":              "DENY",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"Cache-Control":                "no-store",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

func TestSecurityHeadersEverywhere(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		e := newEnvTLS(t, tlsOn)
		c := e.client()
		check := func(what string, a answer) {
			t.Helper()
			for k, v := range wantHeaders {
				if got := a.header.Get(k); got != v {
					t.Errorf("tls=%v %s: %s = %q, want %q", tlsOn, what, k, got, v)
				}
			}
			if hsts := a.header.Get("Strict-Transport-Security"); (hsts != "") != tlsOn {
				t.Errorf("tls=%v %s: HSTS %q", tlsOn, what, hsts)
			}
		}
		paths := []struct{ method, path string }{{"GET", "/"}, {"GET", "/static/app.js"}, {"GET", "/static/app.css"},
			{"GET", "/static/icon.svg"}, {"GET", "/static/nope.js"}, {"GET", "/nope"}, {"DELETE", "/api/status"},
			{"GET", "/api/actions/selftest"}, {"POST", "/api/login"}}
		for _, p := range append(paths, allRoutes()...) {
			check(p.method+" "+p.path+" signed out", c.do(p.method, p.path, "", nil))
		}
		a, _ := c.login(`{"token":"` + e.token(auth.RoleService) + `"}`)
		check("login", a)
		if ck := a.header.Get("Set-Cookie"); strings.Contains(ck, "Secure") != tlsOn {
			t.Errorf("tls=%v: cookie %q", tlsOn, ck)
		}
		for _, p := range allRoutes() {
			if p.path == "/api/logout" {
				continue
			}
			check(p.method+" "+p.path+" signed in", c.do(p.method, p.path, "", nil))
		}
		check("unknown action", c.post("/api/actions/self-destruct", ""))
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	for _, tc := range []struct {
		method, path, body string
		hdr                map[string]string
		status             int
		code               string
	}{
		{"GET", "/api/nothing", "", nil, 404, codeNotFound},
		{"PUT", "/api/status", "", nil, 405, codeMethodNotAllowed},
		{"GET", "/api/actions/selftest", "", nil, 405, codeMethodNotAllowed},
		{"POST", "/api/actions/self-destruct", "", nil, 404, codeUnknownAction},
		{"POST", "/api/actions/test.drawer", "", nil, 404, codeUnknownAction}, // the board has none
		{"POST", "/api/actions/test.card", `[1]`, nil, 400, codeBadRequest},
		{"POST", "/api/actions/test.card", `{"timeoutSec":-1}`, nil, 400, codeBadRequest},
		{"POST", "/api/actions/test.card", `{"timeoutSec":5}`, map[string]string{"Content-Type": "text/plain"}, 400, codeBadRequest},
		{"POST", "/api/actions/params.set", `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, nil, 413, codeTooLarge},
		{"POST", "/api/actions/bundle", "", nil, 400, codeBadRequest},
	} {
		a := c.do(tc.method, tc.path, tc.body, tc.hdr)
		if a.status != tc.status || a.code(t) != tc.code {
			t.Errorf("%s %s %.40s: %d %s, want %d %s", tc.method, tc.path, tc.body, a.status, a.body, tc.status, tc.code)
		}
	}
	if a := c.get("/api/nothing"); a.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("404 type %q", a.header.Get("Content-Type"))
	}
}

func TestActionsRunAndAudited(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))

	var r ActionResult
	a := c.post("/api/actions/selftest", "")
	a.json(t, &r)
	if a.status != http.StatusOK || r.OK || r.Action != ActSelfTest || !strings.Contains(r.Error, "pinpad") {
		t.Fatalf("failed self-test: %d %s", a.status, a.body)
	}
	var st struct {
		Result SelfTestResult `json:"result"`
	}
	a.json(t, &st)
	if len(st.Result.Results) != 2 || st.Result.Results[1].OK {
		t.Fatalf("self-test results %+v", st.Result)
	}

	r = ActionResult{}
	c.post("/api/actions/test.card", `{"timeoutSec":20,"pin":"1234","note":"mqtt://u:pw@h:1"}`).json(t, &r)
	if !r.OK || !strings.Contains(string(mustJSON(t, r.Result)), `"pan":"411111******1111"`) {
		t.Fatalf("card test %+v", r)
	}
	if p := e.term.params[len(e.term.params)-1]; !json.Valid(p) || !bytes.Contains(p, []byte(`"timeoutSec":20`)) {
		t.Fatalf("params reached the terminal as %q", p)
	}

	r = ActionResult{}
	c.post("/api/actions/params.set", `{"name":"logLevel","value":"debug"}`).json(t, &r)
	if !r.OK {
		t.Fatalf("params.set %+v", r)
	}

	r = ActionResult{}
	c.post("/api/actions/audit.verify", "").json(t, &r)
	var vr AuditVerifyResult
	if err := json.Unmarshal(mustJSON(t, r.Result), &vr); err != nil || !r.OK || vr.Count < 4 || vr.First != 1 {
		t.Fatalf("audit.verify %+v (%v)", r, err)
	}

	if got := e.term.actions(); !slices.Equal(got, []string{ActSelfTest, ActCardTest, ActParamsSet}) {
		t.Fatalf("terminal ran %v", got)
	}
	type want struct {
		action, outcome string
		fields          map[string]any
	}
	for _, w := range []want{
		{ActSelfTest, audit.OutcomeFailed, map[string]any{"action": ActSelfTest, "error": "self-test failed: pinpad"}},
		{ActCardTest, audit.OutcomeOK, map[string]any{"action": ActCardTest, "timeoutSec": uint64(20), "pin": "[redacted]", "note": "mqtt://u@h:1"}},
		{ActParamsSet, audit.OutcomeOK, map[string]any{"name": "logLevel", "value": "debug"}},
		{ActAuditVerify, audit.OutcomeOK, map[string]any{"action": ActAuditVerify}},
	} {
		es := e.find(w.action)
		if len(es) != 1 {
			t.Fatalf("%d entries for %s", len(es), w.action)
		}
		en := es[0]
		if en.Source != audit.SourceDiag || en.Actor != "tech42" || en.Outcome != w.outcome {
			t.Errorf("%s entry %+v", w.action, en)
		}
		for k, v := range w.fields {
			if got := en.Fields[k]; !sameScalar(got, v) {
				t.Errorf("%s entry field %s = %#v, want %#v", w.action, k, got, v)
			}
		}
		if _, ok := en.Fields["ms"]; !ok {
			t.Errorf("%s entry has no duration", w.action)
		}
	}
	if _, err := e.audit.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// sameScalar compares an audit field read back with what the test expects (integers may
// come back as any integer type).
func sameScalar(got, want any) bool {
	switch w := want.(type) {
	case uint64:
		switch g := got.(type) {
		case uint64:
			return g == w
		case int64:
			return g >= 0 && uint64(g) == w
		case int:
			return g >= 0 && uint64(g) == w
		}
		return false
	}
	return got == want
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuditVerifyFindsATamperedLog(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	for range 3 {
		c.post("/api/actions/test.print", "")
	}
	// Remove entry 2 behind the log's back, as someone with the database file could.
	if err := e.db.Update(func(tx *bboltTx) error {
		return tx.Bucket([]byte(audit.BucketName)).Bucket([]byte("e")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 2})
	}); err != nil {
		t.Fatal(err)
	}
	var r ActionResult
	a := c.post("/api/actions/audit.verify", "")
	a.json(t, &r)
	var vr AuditVerifyResult
	if err := json.Unmarshal(mustJSON(t, r.Result), &vr); err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusOK || r.OK || vr.BrokenSeq == 0 || vr.Reason == "" || r.Error == "" {
		t.Fatalf("verify of a tampered log: %d %s", a.status, a.body)
	}
	en := e.find(ActAuditVerify)
	if len(en) != 1 || en[0].Outcome != audit.OutcomeFailed {
		t.Fatalf("verify entries %+v", en)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t) // idle 15 min
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	e.clk.add(14 * time.Minute)
	if a := c.get("/api/status"); a.status != http.StatusOK {
		t.Fatalf("after 14 min: %d", a.status)
	}
	e.clk.add(15 * time.Minute)
	a := c.get("/api/status")
	if a.status != http.StatusUnauthorized || a.code(t) != codeSessionExpired {
		t.Fatalf("after 15 idle minutes: %d %s", a.status, a.body)
	}
	if !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("the dead cookie is not cleared: %q", a.header.Get("Set-Cookie"))
	}
	if a := c.post("/api/actions/test.print", ""); a.status != http.StatusUnauthorized {
		t.Fatalf("action after expiry: %d", a.status)
	}
	if len(e.term.actions()) != 0 {
		t.Fatal("an expired session ran an action")
	}
	if en := e.find("diag.sessionExpired"); len(en) != 1 || en[0].Fields["reason"] != "idle" {
		t.Fatalf("expiry entries %+v", en)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	a := c.post("/api/logout", "")
	if a.status != http.StatusOK || !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", a.status, a.header.Get("Set-Cookie"))
	}
	if a := c.get("/api/status"); a.status != http.StatusUnauthorized {
		t.Fatalf("status after logout: %d", a.status)
	}
	if len(e.find("diag.logout")) != 1 {
		t.Fatal("logout not audited")
	}
}

func TestBundle(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	a := c.get("/api/bundle")
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/gzip" ||
		!strings.HasPrefix(a.header.Get("Content-Disposition"), `attachment; filename="posagent-diag-`) ||
		!bytes.HasPrefix(a.body, []byte{0x1f, 0x8b}) {
		t.Fatalf("bundle: %d %v %q", a.status, a.header, a.body)
	}
	en := e.find(ActBundle)
	if len(en) != 1 || en[0].Outcome != audit.OutcomeOK || !sameScalar(en[0].Fields["bytes"], uint64(len(a.body))) {
		t.Fatalf("bundle entries %+v (body %d bytes)", en, len(a.body))
	}

	e.term.mu.Lock()
	e.term.bundleErr = errors.New("disk read failed")
	e.term.mu.Unlock()
	a = c.get("/api/bundle")
	if a.status != http.StatusInternalServerError || a.code(t) != codeInternal || a.header.Get("Content-Disposition") != "" {
		t.Fatalf("failed bundle: %d %v %s", a.status, a.header, a.body)
	}
	if en := e.find(ActBundle); len(en) != 2 || en[1].Outcome != audit.OutcomeFailed {
		t.Fatalf("failed bundle entries %+v", en)
	}
}

// TestNoSecretInAnswers walks the whole API as a browser would and greps every answer
// (headers and bodies, the audit log included) for the secrets in play.
func TestNoSecretInAnswers(t *testing.T) {
	e := newEnv(t)
	tok := e.token(auth.RoleService)
	c := e.client()
	c.login(`{"password":"wrong-` + adminPassword + `"}`)
	c.login(`{"password":"` + adminPassword + `"}`)
	c.loginToken(tok)
	for _, act := range Actions {
		c.post("/api/actions/"+act, `{"password":"`+adminPassword+`","token":"`+tok+`","note":"`+tok+`","timeoutSec":5}`)
	}
	for _, p := range []string{"/", "/static/app.js", "/api/session", "/api/status", "/api/history", "/api/events", "/api/logs", "/api/audit?n=1000", "/api/bundle"} {
		c.get(p)
	}
	priv := e.priv
	secrets := map[string][]byte{
		"admin password":  []byte(adminPassword),
		"token":           []byte(tok),
		"token payload":   []byte(strings.TrimPrefix(tok, "pat1.")[:40]),
		"full PAN":        []byte(cardPAN),
		"private key":     priv.Seed(),
		"private key b64": []byte(base64.StdEncoding.EncodeToString(priv.Seed())[:20]),
		"private key hex": []byte(hex.EncodeToString(priv.Seed())[:20]),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) < 40 {
		t.Fatalf("only %d answers seen", len(c.seen))
	}
	for _, b := range c.seen {
		for name, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("an answer contains the %s: %.300q", name, b)
			}
		}
	}
}

func TestConsolePage(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	page := c.get("/")
	if page.status != http.StatusOK || page.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("page: %d %v", page.status, page.header)
	}
	js := c.get("/static/app.js")
	css := c.get("/static/app.css")
	icon := c.get("/static/icon.svg")
	if js.header.Get("Content-Type") != "text/javascript; charset=utf-8" || css.header.Get("Content-Type") != "text/css; charset=utf-8" ||
		icon.header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("static types: %q %q %q", js.header.Get("Content-Type"), css.header.Get("Content-Type"), icon.header.Get("Content-Type"))
	}
	if total := len(page.body) + len(js.body) + len(css.body) + len(icon.body); total > 60<<10 {
		t.Errorf("the console is %d bytes, over 60 KiB", total)
	}
	html := string(page.body)
	// Under the CSP these would be refused: the page must not need them.
	for _, tag := range regexp.MustCompile(`(?is)<script[^>]*>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(tag[0], `src="/static/`) || strings.TrimSpace(tag[1]) != "" {
			t.Errorf("inline script %q", tag[0])
		}
	}
	for _, re := range []string{`(?i)<style`, `(?i)\sstyle=`, `(?i)\son[a-z]+=`, `(?i)javascript:`, `https?://`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("the page has %q", m)
		}
	}
	if regexp.MustCompile(`https?://`).Match(css.body) || regexp.MustCompile(`url\(`).Match(css.body) {
		t.Error("the style loads something from elsewhere")
	}
	// The DOM ids the browser tests rely on: in the page, or made by the script.
	for _, id := range []string{"login-form", "login-token", "login-password", "login-submit", "login-error", "whoami",
		"logout", "status-serial", "status-version", "tms-state", "host-state", "hardware", "ota-stage", "ota-bar",
		"chart-rss", "chart-cpu", "action-result", "selftest-results", "audit-list", "audit-verify", "events", "logs"} {
		if !strings.Contains(html, `id="`+id+`"`) {
			t.Errorf("the page has no #%s", id)
		}
	}
	for _, want := range []string{`<progress id="ota-bar" max="100"`, `<svg id="chart-cpu"`, `<svg id="chart-rss"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	for _, want := range []string{"'data-action'", "'data-ok'", "'data-device'", "'data-state'", "'data-stage'", "'X-CSRF-Token'"} {
		if !bytes.Contains(js.body, []byte(want)) {
			t.Errorf("the script never sets %s", want)
		}
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Load().Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	c := e.client()
	c.loginToken(e.token(auth.RoleService))
	cookies := c.hc.Jar.Cookies(mustURL(t, e.ts.URL))
	// A card read that would wait far longer than the test: shutting down must end it.
	req, _ := http.NewRequest("POST", base+"/api/actions/test.card", strings.NewReader(`{"timeoutSec":600}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderCSRF, c.csrf)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	answered := make(chan ActionResult, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- ActionResult{Error: err.Error()}
			return
		}
		defer resp.Body.Close()
		var r ActionResult
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &r)
		answered <- r
	}()
	for !slices.Contains(e.term.actions(), ActCardTest) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	r := <-answered
	if r.OK || !strings.Contains(r.Error, "context canceled") {
		t.Fatalf("the card read in flight: %+v", r)
	}
	if en := e.find(ActCardTest); len(en) != 1 || en[0].Outcome != audit.OutcomeFailed {
		t.Fatalf("the cut action is not audited: %+v", en)
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestServeTLSListener(t *testing.T) {
	e := newEnvTLS(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tlsListener(ln, e.ts.TLS)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.srv.Load().Serve(ctx, tlsLn) }()
	hc := e.ts.Client()
	resp, err := hc.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS over TLS")
	}
}

func tlsListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type bboltTx = store.Tx

// TestBackgroundPollsDoNotKeepTheSessionAlive: the console's timed refreshes (marked with
// HeaderBackground) do not count as activity, so a page left open still reaches the idle
// timeout; a request the technician made does count.
func TestBackgroundPollsDoNotKeepTheSessionAlive(t *testing.T) {
	e := newEnv(t) // idle 15 min
	poll := map[string]string{HeaderBackground: "1"}
	left := e.client()   // a page left open: only its timer asks
	active := e.client() // the technician taps now and then
	left.loginToken(e.token(auth.RoleService))
	active.loginToken(e.token(auth.RoleService, func(c *auth.Claims) { c.Technician = "tech7" }))
	for minute := 1; minute < 15; minute++ {
		e.clk.add(time.Minute)
		for _, c := range []*client{left, active} {
			for _, p := range []string{"/api/status", "/api/history", "/api/session"} {
				if a := c.do(http.MethodGet, p, "", poll); a.status != http.StatusOK {
					t.Fatalf("background %s after %d min: %d %s", p, minute, a.status, a.body)
				}
			}
		}
		if minute == 10 {
			if a := active.get("/api/events"); a.status != http.StatusOK {
				t.Fatalf("a request of the technician: %d", a.status)
			}
		}
	}
	e.clk.add(time.Minute) // 15 minutes since the sign-in, 5 since the active one's request
	a := left.do(http.MethodGet, "/api/status", "", poll)
	if a.status != http.StatusUnauthorized || a.code(t) != codeSessionExpired {
		t.Fatalf("polled only in the background for 15 min: %d %s", a.status, a.body)
	}
	if !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("the dead cookie is not cleared: %q", a.header.Get("Set-Cookie"))
	}
	if a := active.do(http.MethodGet, "/api/status", "", poll); a.status != http.StatusOK {
		t.Fatalf("a session used 5 minutes ago: %d %s", a.status, a.body)
	}
	en := e.find("diag.sessionExpired")
	if len(en) != 1 || en[0].Actor != "tech42" || en[0].Fields["reason"] != "idle" {
		t.Fatalf("expiry entries %+v", en)
	}

	// An action is the technician's doing even with the header: it keeps the session.
	e.clk.add(9 * time.Minute) // 14 minutes since the active one's last request
	if a := active.do(http.MethodPost, "/api/actions/"+ActPrintTest, "", poll); a.status != http.StatusOK {
		t.Fatalf("action: %d %s", a.status, a.body)
	}
	e.clk.add(10 * time.Minute)
	if a := active.do(http.MethodGet, "/api/status", "", poll); a.status != http.StatusOK {
		t.Fatalf("10 minutes after an action: %d %s", a.status, a.body)
	}
	// Anything but "1" is not a background poll.
	e.clk.add(4 * time.Minute) // 14 minutes since the action
	if a := active.do(http.MethodGet, "/api/status", "", map[string]string{HeaderBackground: "0"}); a.status != http.StatusOK {
		t.Fatalf("header 0: %d %s", a.status, a.body)
	}
	e.clk.add(10 * time.Minute)
	if a := active.do(http.MethodGet, "/api/status", "", poll); a.status != http.StatusOK {
		t.Fatalf("10 minutes after a request with %s: 0: %d %s", HeaderBackground, a.status, a.body)
	}
	e.clk.add(5 * time.Minute)
	if a := active.do(http.MethodGet, "/api/status", "", poll); a.status != http.StatusUnauthorized || a.code(t) != codeSessionExpired {
		t.Fatalf("15 minutes of background polls only: %d %s", a.status, a.body)
	}
}

// TestActionsKnowTheTechnician: the Terminal sees who runs an action (WithActor).
func TestActionsKnowTheTechnician(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	c.loginToken(e.token(auth.RoleService, func(c *auth.Claims) { c.Technician = "tech7" }))
	if a := c.post("/api/actions/"+ActPrintTest, ""); a.status != http.StatusOK {
		t.Fatalf("action: %d %s", a.status, a.body)
	}
	c2 := e.client()
	if a, _ := c2.login(`{"password":"` + adminPassword + `"}`); a.status != http.StatusOK {
		t.Fatalf("admin login: %d", a.status)
	}
	if a := c2.post("/api/actions/"+ActEchoHost, ""); a.status != http.StatusOK {
		t.Fatalf("action: %d %s", a.status, a.body)
	}
	e.term.mu.Lock()
	defer e.term.mu.Unlock()
	if !slices.Equal(e.term.actors, []string{"tech7", auth.AdminTechnician}) {
		t.Fatalf("actors %q", e.term.actors)
	}
}

func TestActorContext(t *testing.T) {
	if got := ActorFrom(context.Background()); got != "" {
		t.Fatalf("no actor: %q", got)
	}
	ctx := WithActor(context.Background(), "tech42")
	if got := ActorFrom(ctx); got != "tech42" {
		t.Fatalf("actor %q", got)
	}
	if got := ActorFrom(WithActor(ctx, "tech7")); got != "tech7" {
		t.Fatalf("inner actor %q", got)
	}
}
