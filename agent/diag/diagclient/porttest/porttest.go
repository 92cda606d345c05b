// Package porttest runs a real diagnostics port (diag.Server, auth.Store, audit.Log on a
// temporary database) over a scripted terminal, for the tests of its clients: diagclient and
// the `posagent diag` command line.
package porttest

import (
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Identity and secrets of the port.
const (
	Serial        = "SN100200"
	DeviceID      = "dev-7f3a"
	AdminPassword = "Adm1n-S3cret-4711"
	KeyID         = "tms-1"
)

// Port is a diagnostics port listening on a test server.
type Port struct {
	t        testing.TB
	URL      string
	Server   *httptest.Server
	Audit    *audit.Log
	Auth     *auth.Store
	Terminal *Terminal
	priv     ed25519.PrivateKey
}

// Start serves a port on a fresh database (TLS when tlsOn); everything stops with the test.
// Three failed logins lock it for ten minutes.
func Start(t testing.TB, tlsOn bool) *Port {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tmsproto.NewSign1Keys(map[string]ed25519.PublicKey{KeyID: pub})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	commit := store.NewCommitter(db)
	t.Cleanup(func() { commit.Close(); _ = db.Close() })
	quiet := slog.New(slog.DiscardHandler)
	lg, err := audit.Open(audit.Options{DB: db, Commit: commit, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	policy := func() auth.Policy {
		return auth.Policy{MaxFailures: 3, Lockout: 10 * time.Minute, AdminPassword: true}
	}
	as, err := auth.Open(auth.Options{DB: db, Commit: commit, Keys: keys, IDs: []string{Serial, DeviceID},
		Policy: policy, Audit: lg, Logger: quiet, Admin: func(_ context.Context, pw string) error {
			if pw != AdminPassword {
				return errors.New("bad password")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	term := &Terminal{}
	srv := diag.New(diag.Options{Terminal: term, Auth: as, Audit: lg, Policy: policy, Logger: quiet})
	var ts *httptest.Server
	if tlsOn {
		ts = httptest.NewTLSServer(srv.Handler())
	} else {
		ts = httptest.NewServer(srv.Handler())
	}
	t.Cleanup(ts.Close)
	return &Port{t: t, URL: ts.URL, Server: ts, Audit: lg, Auth: as, Terminal: term, priv: priv}
}

// Token is a technician token for this terminal, valid for the next hour.
func (p *Port) Token(role auth.Role) string {
	p.t.Helper()
	now := time.Now()
	tok, err := auth.IssueToken(p.priv, KeyID, auth.Claims{ID: "tok-" + string(role), Technician: "tech42",
		Name: "Aigerim S.", Role: role, Terminals: []string{Serial}, IssuedAt: now.Add(-time.Minute).Unix(),
		Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// Entries is the audit entries of one action, oldest first.
func (p *Port) Entries(action string) []audit.Entry {
	p.t.Helper()
	es, err := p.Audit.Recent(10000)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range es {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// Call is one action the terminal ran.
type Call struct {
	Action string
	Params json.RawMessage
}

// Terminal is a scripted diag.Terminal: fixed status, and actions that answer by name (a
// self-test with one failed device, test.print failing with "paper out", the others
// succeeding with a small result).
type Terminal struct {
	mu    sync.Mutex
	calls []Call
}

// Calls is the actions run, in order.
func (f *Terminal) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Status implements diag.Terminal.
func (f *Terminal) Status(context.Context) diag.Status {
	return diag.Status{Time: time.Now(),
		Identity: diag.Identity{Serial: Serial, DeviceID: DeviceID, Model: "WPOS-3", Board: "sim", TerminalID: "T0001"},
		Agent:    diag.AgentStatus{Version: "1.8.0", Slot: "a", Target: "linux/arm64", UptimeS: 3725},
		TMS:      diag.TMSStatus{Connected: true, Broker: "mqtts://tms.example:8883"},
		Host:     diag.HostStatus{Configured: true, State: "normal", Address: "10.0.0.5:5000"},
		Hardware: []diag.Device{{Name: "printer", Kind: "printer", State: "ok"}, {Name: "pinpad", Kind: "pinpad", State: "gone"}},
		Outbox:   diag.OutboxStatus{Records: 3, Bytes: 2048},
		Config:   diag.ConfigStatus{Version: 7},
		Keys:     []diag.KeySlot{{Role: "pin", KCV: "A1B2C3", Alg: "tdes"}},
		License:  diag.LicenseStatus{State: "valid", ID: "lic-9"},
		Batch: diag.BatchStatus{Number: 12, Count: 2, Totals: []diag.BatchTotals{{Currency: "KZT", SalesCount: 2,
			SalesAmount: 150000}}},
		OTA:       diag.OTAStatus{Slot: "a", Stage: "downloading", Progress: 42, Job: "job-1"},
		Resources: diag.Sample{CPUPercent: 2.5, RSSBytes: 30 << 20},
		Params:    []diag.LocalParam{{Name: "logLevel", Value: "info", Choices: []string{"debug", "info", "warn", "error"}}},
	}
}

// History implements diag.Terminal.
func (f *Terminal) History() []diag.Sample {
	t := time.Now()
	return []diag.Sample{{Time: t.Add(-10 * time.Second), CPUPercent: 1, RSSBytes: 29 << 20}, {Time: t, CPUPercent: 2.5, RSSBytes: 30 << 20}}
}

// Events implements diag.Terminal.
func (f *Terminal) Events(n int) []diag.EventLine {
	ev := []diag.EventLine{{Time: time.Now(), Kind: "hw.paperLow", Fields: map[string]any{"device": "printer"}}}
	return ev[:min(n, len(ev))]
}

// Logs implements diag.Terminal.
func (f *Terminal) Logs(n int) []string {
	l := []string{"level=INFO msg=started", "level=WARN msg=\"paper low\""}
	return l[max(0, len(l)-n):]
}

// Act implements diag.Terminal.
func (f *Terminal) Act(_ context.Context, action string, params json.RawMessage, _ func(int)) (any, error) {
	f.mu.Lock()
	f.calls = append(f.calls, Call{Action: action, Params: params})
	f.mu.Unlock()
	switch action {
	case diag.ActSelfTest:
		return diag.SelfTestResult{Results: []diag.DeviceResult{{Device: "printer", Kind: "printer", OK: true},
			{Device: "pinpad", Kind: "pinpad", Detail: "no answer"}}}, errors.New("1 device failed")
	case diag.ActPrintTest:
		return nil, errors.New("paper out")
	case diag.ActEchoTMS, diag.ActEchoHost:
		return diag.EchoResult{RTTMs: 12}, nil
	case diag.ActCardTest:
		return diag.CardTestResult{PAN: "411111******1111", EntryMode: "chip"}, nil
	case diag.ActParamsSet:
		var p struct{ Name, Value string }
		if err := json.Unmarshal(params, &p); err != nil || p.Name != "logLevel" {
			return nil, &diag.ParamError{Reason: "unknown parameter"}
		}
		return map[string]string{"name": p.Name, "value": p.Value}, nil
	case diag.ActSettle:
		return diag.BatchStatus{Number: 12, Count: 2}, nil
	}
	return nil, nil
}

// BundleContent is what Bundle's archive holds, gzip'd.
const BundleContent = "status.json\n"

// Bundle implements diag.Terminal.
func (f *Terminal) Bundle(_ context.Context, w io.Writer) error {
	zw := gzip.NewWriter(w)
	if _, err := io.WriteString(zw, BundleContent); err != nil {
		return err
	}
	return zw.Close()
}
