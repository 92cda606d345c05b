package diagclient_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/diag/diagclient"
	"github.com/posagent/posagent/agent/diag/diagclient/porttest"
)

func TestClientAgainstThePort(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		p := porttest.Start(t, tlsOn)
		ctx := context.Background()
		c := diagclient.New(p.URL, p.Server.Client())

		if _, err := c.Status(ctx); !isAPI(err, http.StatusUnauthorized, "unauthenticated") {
			t.Fatalf("status before login: %v", err)
		}
		s, err := c.Login(ctx, diagclient.Credentials{Token: "  " + p.Token(auth.RoleService) + "\n"})
		if err != nil || s.Technician != "tech42" || s.Role != "service" {
			t.Fatalf("login: %+v %v", s, err)
		}
		if again, err := c.Session(ctx); err != nil || again.CSRF != s.CSRF {
			t.Fatalf("session: %+v %v", again, err)
		}
		st, err := c.Status(ctx)
		if err != nil || st.Identity.Serial != porttest.Serial || st.OTA.Progress != 42 {
			t.Fatalf("status: %+v %v", st, err)
		}
		if h, err := c.History(ctx); err != nil || len(h) != 2 {
			t.Fatalf("history: %v %v", h, err)
		}
		if ev, err := c.Events(ctx, 10); err != nil || len(ev) != 1 || ev[0].Kind != "hw.paperLow" {
			t.Fatalf("events: %v %v", ev, err)
		}
		if l, err := c.Logs(ctx, 1); err != nil || len(l) != 1 {
			t.Fatalf("logs: %v %v", l, err)
		}

		var echo diag.EchoResult
		if ok, err := c.Act(ctx, diag.ActEchoHost, nil, &echo); !ok || err != nil || echo.RTTMs != 12 {
			t.Fatalf("echo: %v %v %+v", ok, err, echo)
		}
		var self diag.SelfTestResult
		ok, err := c.Act(ctx, diag.ActSelfTest, nil, &self)
		var ae *diagclient.ActionError
		if ok || !errors.As(err, &ae) || ae.Message != "1 device failed" || len(self.Results) != 2 {
			t.Fatalf("failed self-test: %v %v %+v", ok, err, self)
		}
		if ok, err := c.Act(ctx, diag.ActParamsSet, map[string]string{"name": "nope", "value": "x"}, nil); ok ||
			!isAPI(err, http.StatusBadRequest, "bad_request") {
			t.Fatalf("bad params: %v %v", ok, err)
		}
		if ok, err := c.Act(ctx, "self-destruct", nil, nil); ok || !isAPI(err, http.StatusNotFound, "unknown_action") {
			t.Fatalf("unknown action: %v %v", ok, err)
		}
		var buf bytes.Buffer
		if err := c.Bundle(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(zr); string(b) != porttest.BundleContent {
			t.Fatalf("bundle %q", b)
		}
		es, err := c.Audit(ctx, 100)
		if err != nil || len(es) < 5 || es[len(es)-1].Action != diag.ActBundle {
			t.Fatalf("audit: %v %v", es, err)
		}
		if err := c.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(ctx); !isAPI(err, http.StatusUnauthorized, "unauthenticated") {
			t.Fatalf("status after logout: %v", err)
		}
		if got := len(p.Entries("diag.logout")); got != 1 {
			t.Fatalf("%d logouts audited", got)
		}
	}
}

func TestClientRefusals(t *testing.T) {
	p := porttest.Start(t, false)
	ctx := context.Background()

	ro := diagclient.New(p.URL, nil)
	if _, err := ro.Login(ctx, diagclient.Credentials{Token: p.Token(auth.RoleReadOnly)}); err != nil {
		t.Fatal(err)
	}
	if ok, err := ro.Act(ctx, diag.ActPrintTest, nil, nil); ok || !isAPI(err, http.StatusForbidden, "forbidden") {
		t.Fatalf("read-only print: %v %v", ok, err)
	}
	if err := ro.Bundle(ctx, io.Discard); !isAPI(err, http.StatusForbidden, "forbidden") {
		t.Fatalf("read-only bundle: %v", err)
	}
	if len(p.Terminal.Calls()) != 0 {
		t.Fatal("a read-only client ran an action")
	}

	if _, err := diagclient.New(p.URL, nil).Login(ctx, diagclient.Credentials{}); !errors.Is(err, diagclient.ErrCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
	if _, err := diagclient.New("ftp://x", nil).Status(ctx); !errors.Is(err, diagclient.ErrBaseURL) {
		t.Fatalf("bad base: %v", err)
	}
	var last error
	for range 3 {
		_, last = diagclient.New(p.URL, nil).Login(ctx, diagclient.Credentials{Password: "guess"})
	}
	var ae *diagclient.APIError
	if !errors.As(last, &ae) || ae.Status != http.StatusLocked || ae.Code != "locked_out" || ae.Until.IsZero() {
		t.Fatalf("third failure: %v", last)
	}
	_, err := diagclient.New(p.URL, nil).Login(ctx, diagclient.Credentials{Password: porttest.AdminPassword})
	if !isAPI(err, http.StatusLocked, "locked_out") {
		t.Fatalf("good password while locked: %v", err)
	}
}

func isAPI(err error, status int, code string) bool {
	var ae *diagclient.APIError
	return errors.As(err, &ae) && ae.Status == status && ae.Code == code
}
