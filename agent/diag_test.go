package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/board/sim"
	"github.com/posagent/posagent/internal/testbroker"
)

// Secrets planted in the running agent; none may show in a status, an event or the bundle.
const (
	plantTMSPassword = "tms-Secret-Pw-8842"
	plantPAN         = "6222021234561236"
	plantPANMask     = "622202******1236"
	plantPINBlock    = "DEADBEEFCAFE1234"
	plantToken       = "tok-SECRET-77"
	plantAdminPW     = "adm-SECRET-1"
)

type diagRig struct {
	t      *testing.T
	a      *Agent
	logs   *logging.Log
	cancel context.CancelFunc
	done   chan error
}

// startDiagAgent runs the whole agent (sim board, a real broker when given) in this process
// with the diagnostics port on a free loopback port, until stop or the end of the test.
func startDiagAgent(t *testing.T, dir, broker, password string) *diagRig {
	t.Helper()
	return startDiagAgentWith(t, dir, broker, password, "")
}

// startDiagAgentWith adds extra to the [diag] table.
func startDiagAgentWith(t *testing.T, dir, broker, password, extra string) *diagRig {
	t.Helper()
	if broker == "" {
		broker = "tcp://127.0.0.1:1" // nothing listens: the link keeps retrying
	}
	cfg, err := config.Parse("test", fmt.Appendf(nil, `device_id = "DIAG-1"
data_dir = %q
board = "sim"

[tms]
broker = %q
password = %q
backoff_base = "50ms"
backoff_cap = "500ms"

[log]
file = "-"

[ecr]
listen = "127.0.0.1:0"

[diag]
listen = "127.0.0.1:0"
history_interval = "1s"
%s`, filepath.Join(dir, "data"), broker, password, extra))
	if err != nil {
		t.Fatal(err)
	}
	logs, err := logging.New(logging.Options{Level: slog.LevelInfo, Stderr: io.Discard, Ring: 200})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Agent, 1)
	ctx, cancel := context.WithCancel(context.Background())
	r := &diagRig{t: t, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- Run(ctx, cfg, Options{Logger: logs.Logger, Recent: logs.Recent, Level: logs,
			Services: map[string]func(context.Context, *Agent) error{"test-handle": func(ctx context.Context, a *Agent) error {
				got <- a
				<-ctx.Done()
				return nil
			}}})
	}()
	select {
	case r.a = <-got:
	case err := <-r.done:
		t.Fatalf("agent stopped at start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not start")
	}
	t.Cleanup(r.stop)
	waitUntil(t, "diagnostics port", func() bool { return r.a.DiagAddr() != "" })
	return r
}

func (r *diagRig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		r.t.Errorf("agent: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func act(t *testing.T, a *Agent, action string, params string) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return diagTerminal{a}.Act(ctx, action, json.RawMessage(params), nil)
}

func TestDiagStatusEventsAndActions(t *testing.T) {
	br := testbroker.Start(t, testbroker.Options{Devices: []string{"DIAG-1"}})
	r := startDiagAgent(t, t.TempDir(), br.URL(), br.DevicePassword("DIAG-1"))
	a := r.a
	term := diagTerminal{a}
	waitUntil(t, "TMS link", func() bool { return a.link.Status().Connected })
	ctx := context.Background()

	st := term.Status(ctx)
	if st.Identity.DeviceID != "DIAG-1" || st.Identity.Serial != "DIAG-1" || st.Identity.Board != "sim" ||
		st.Identity.Model != sim.Model {
		t.Errorf("identity %+v", st.Identity)
	}
	if !st.TMS.Connected || st.TMS.Broker != br.URL() || st.TMS.Connects == 0 || st.TMS.ConnectedAt.IsZero() {
		t.Errorf("tms %+v (broker %s)", st.TMS, br.URL())
	}
	if st.Agent.Version == "" || st.Agent.Target == "" {
		t.Errorf("agent %+v", st.Agent)
	}
	if st.Host.Configured || st.Host.State == "" {
		t.Errorf("host without a configuration: %+v", st.Host)
	}
	if !slices.ContainsFunc(st.Hardware, func(d diag.Device) bool { return d.Name == sim.SensorDock && d.State == "docked" }) {
		t.Errorf("hardware %+v", st.Hardware)
	}
	if st.Resources.Goroutines == 0 || st.Resources.HeapBytes == 0 || st.Resources.Time.IsZero() {
		t.Errorf("resources %+v", st.Resources)
	}
	if len(st.Batch.Totals) != 1 || st.Batch.Totals[0].SalesCount != 0 {
		t.Errorf("batch %+v", st.Batch)
	}
	if len(st.Params) != 2 || st.Params[0].Name != ParamLogLevel || st.Params[0].Value != "info" ||
		st.Params[1].Name != ParamTMSBroker || st.Params[1].Value != br.URL() || st.Params[1].Pending {
		t.Errorf("params %+v", st.Params)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(plantTMSPassword)) || bytes.Contains(raw, []byte(br.DevicePassword("DIAG-1"))) {
		t.Errorf("the status shows the TMS password: %s", raw)
	}

	waitUntil(t, "cash-register API", func() bool { return a.ECRAddr() != "" })
	if e := term.Status(ctx).ECR; e.Listen != a.ECRAddr() || e.Protected || len(e.Pending) != 0 {
		t.Errorf("ecr %+v", e)
	}

	// The sampler keeps a history for the charts.
	waitUntil(t, "two samples", func() bool { return len(term.History()) >= 2 })
	h := term.History()
	if !h[0].Time.Before(h[len(h)-1].Time) {
		t.Errorf("history not oldest first: %v … %v", h[0].Time, h[len(h)-1].Time)
	}

	// Events are kept as queued, masked like the logs.
	a.event(ctx, "test.event", map[string]any{"detail": "card " + plantPAN, "pinBlock": plantPINBlock,
		"n": 7, "nested": map[string]any{"pan": plantPAN, "track2": plantPAN + "=2512"}})
	evs := term.Events(5)
	last := evs[len(evs)-1]
	if last.Kind != "test.event" || last.Fields["detail"] != "card "+plantPANMask || last.Fields["pinBlock"] != logging.Redacted ||
		last.Fields["n"] != 7 {
		t.Errorf("event %+v", last)
	}
	evRaw, _ := json.Marshal(evs)
	if bytes.Contains(evRaw, []byte(plantPAN)) || bytes.Contains(evRaw, []byte(plantPINBlock)) {
		t.Errorf("events hold a secret: %s", evRaw)
	}
	if n := len(term.Events(1)); n != 1 {
		t.Errorf("Events(1) gave %d", n)
	}

	// The log ring is the redacted log.
	a.log.Info("diag test line "+plantPAN, "token", plantToken)
	logs := term.Logs(0)
	joined := strings.Join(logs, "\n")
	if !strings.Contains(joined, "diag test line "+plantPANMask) || strings.Contains(joined, plantToken) || strings.Contains(joined, plantPAN) {
		t.Errorf("log ring: %q", logs[max(0, len(logs)-3):])
	}

	// Actions.
	res, err := act(t, a, diag.ActEchoTMS, "")
	if err != nil {
		t.Fatalf("echo.tms: %v", err)
	}
	if _, ok := res.(diag.EchoResult); !ok {
		t.Errorf("echo.tms result %T", res)
	}
	if _, err := act(t, a, diag.ActEchoHost, ""); err == nil {
		t.Error("echo.host without a host configured succeeded")
	}
	sb := a.board.(*sim.Board)
	before := len(sb.Drawer().History())
	if _, err := act(t, a, diag.ActDrawerTest, ""); err != nil {
		t.Fatalf("test.drawer: %v", err)
	}
	if h := sb.Drawer().History()[before:]; !slices.Contains(h, gpio.High) || h[len(h)-1] != gpio.Low {
		t.Errorf("drawer line %v: no pulse, or left high", h)
	}
	before = len(sb.Buzzer().History())
	if _, err := act(t, a, diag.ActBuzzerTest, ""); err != nil {
		t.Fatalf("test.buzzer: %v", err)
	}
	if h := sb.Buzzer().History()[before:]; !slices.Contains(h, gpio.High) || h[len(h)-1] != gpio.Low {
		t.Errorf("buzzer line %v", h)
	}
	// Connected, the status LED is steady on; the test blinks it and puts it back.
	green, red := sb.StatusLEDs()
	waitUntil(t, "status LED on", func() bool { return green.Read() == gpio.High })
	before, beforeRed := len(green.History()), len(red.History())
	if _, err := act(t, a, diag.ActLEDTest, ""); err != nil {
		t.Fatalf("test.led: %v", err)
	}
	if h := green.History()[before:]; !slices.Contains(h, gpio.Low) || !slices.Contains(h, gpio.High) || green.Read() != gpio.High {
		t.Errorf("status LED %v, now %v", h, green.Read())
	}
	if h := red.History()[beforeRed:]; !slices.Contains(h, gpio.High) || red.Read() != gpio.Low {
		t.Errorf("error LED %v, now %v", h, red.Read())
	}
	for _, action := range []string{diag.ActPrintTest, diag.ActPINPadTest, diag.ActCardTest} {
		if _, err := act(t, a, action, ""); !errors.Is(err, ErrNoDevice) {
			t.Errorf("%s on a terminal without the device: %v, want ErrNoDevice", action, err)
		}
	}
	res, err = act(t, a, diag.ActSelfTest, "")
	if str, ok := res.(diag.SelfTestResult); !ok || len(str.Results) == 0 || (err == nil) != str.OK {
		t.Errorf("selftest: %+v, %v", res, err)
	}
	var pe *diag.ParamError
	if _, err := act(t, a, diag.ActSelfTest, `{"x":1}`); !errors.As(err, &pe) {
		t.Errorf("unknown parameter: %v", err)
	}
	if _, err := act(t, a, diag.ActCardTest, `{"timeoutSec": 9999}`); !errors.As(err, &pe) {
		t.Errorf("card test timeout out of range: %v", err)
	}
	if _, err := act(t, a, diag.ActECRApprove, `{}`); !errors.As(err, &pe) {
		t.Errorf("approve without an id: %v", err)
	}
	if _, err := act(t, a, diag.ActECRApprove, `{"id":"nope"}`); err == nil {
		t.Error("approving a registration nobody asked for succeeded")
	}
	for _, action := range []string{"fly", diag.ActBundle, diag.ActAuditVerify} {
		if _, err := act(t, a, action, ""); !errors.Is(err, diag.ErrUnknownAction) {
			t.Errorf("%s: %v, want ErrUnknownAction", action, err)
		}
	}

	// Lock and unlock go through the payment engine.
	if _, err := act(t, a, diag.ActLock, ""); err != nil {
		t.Fatal(err)
	}
	if s := term.Status(ctx); s.Host.State != "locked" {
		t.Errorf("after lock: %+v", s.Host)
	}
	if _, err := act(t, a, diag.ActUnlock, ""); err != nil {
		t.Fatal(err)
	}
	if s := term.Status(ctx); s.Host.State != "signed-out" {
		t.Errorf("after unlock: %+v", s.Host)
	}
	if _, err := act(t, a, diag.ActSettle, ""); err == nil {
		t.Error("settle without a host succeeded")
	}
}

// TestDiagAuditRouting: the operators' and the cash-register registrations' events are audit
// entries with their source and actor, and go up on up/log/audit.
func TestDiagAuditRouting(t *testing.T) {
	r := startDiagAgent(t, t.TempDir(), "", "")
	a := r.a
	ctx := context.Background()
	if _, err := a.Operators().SignOn(ctx, "00", "wrong-password"); err == nil {
		t.Fatal("sign-on with a wrong password")
	}
	a.auditHook(audit.SourceECR, "ecr.")(ctx, "ecr.register.deny", map[string]any{"id": "r1", "name": "till-1", "by": "pinpad"})
	entries, err := a.Audit().Recent(10)
	if err != nil {
		t.Fatal(err)
	}
	var op, ecr *audit.Entry
	for i := range entries {
		switch entries[i].Action {
		case "operator.authFailed":
			op = &entries[i]
		case "ecr.register.deny":
			ecr = &entries[i]
		}
	}
	if op == nil || op.Source != audit.SourceOperator || op.Actor != "00" || op.Outcome != audit.OutcomeDenied {
		t.Errorf("operator entry %+v in %+v", op, entries)
	}
	if ecr == nil || ecr.Source != audit.SourceECR || ecr.Actor != "pinpad" || ecr.Outcome != audit.OutcomeDenied {
		t.Errorf("ecr entry %+v", ecr)
	}
	if _, err := a.Audit().Verify(ctx); err != nil {
		t.Errorf("chain: %v", err)
	}
	recs, err := a.Outbox.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	up := 0
	for _, rec := range recs {
		if rec.Stream == "log/audit" {
			up++
		}
	}
	if up < 2 {
		t.Errorf("%d audit records queued for upload", up)
	}
}

// TestDiagParamsPersist: the log level applies at once and after a restart; the broker
// override waits for the next start, and is then in use.
func TestDiagParamsPersist(t *testing.T) {
	dir := t.TempDir()
	r := startDiagAgent(t, dir, "", "")
	a := r.a
	fileBroker := a.cfg.TMS.Broker
	if _, err := act(t, a, diag.ActParamsSet, `{"name":"logLevel","value":"debug"}`); err != nil {
		t.Fatal(err)
	}
	if r.logs.Level() != slog.LevelDebug {
		t.Errorf("level %v after logLevel=debug", r.logs.Level())
	}
	var pe *diag.ParamError
	for _, bad := range []string{`{"name":"logLevel","value":"chatty"}`, `{"name":"tmsBroker","value":"http://x:1"}`,
		`{"name":"tmsBroker","value":"tcp://u:pw@h:1883"}`, `{"name":"colour","value":"red"}`, `{"name":"logLevel"`, `[1]`} {
		if _, err := act(t, a, diag.ActParamsSet, bad); !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a ParamError", bad, err)
		}
	}
	const override = "tcp://127.0.0.1:2"
	res, err := act(t, a, diag.ActParamsSet, `{"name":"tmsBroker","value":"`+override+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	params := res.([]diag.LocalParam)
	if params[1].Value != override || !params[1].Pending {
		t.Errorf("after set: %+v", params[1])
	}
	if st := (diagTerminal{a}).Status(context.Background()); st.TMS.Broker != fileBroker {
		t.Errorf("the link moved before a restart: %s", st.TMS.Broker)
	}
	r.stop()

	r = startDiagAgent(t, dir, "", "")
	a = r.a
	if r.logs.Level() != slog.LevelDebug {
		t.Errorf("level %v after a restart", r.logs.Level())
	}
	st := diagTerminal{a}.Status(context.Background())
	if st.TMS.Broker != override || st.Params[1].Pending || st.Params[1].Value != override || st.Params[0].Value != "debug" {
		t.Errorf("after a restart: tms %s, params %+v", st.TMS.Broker, st.Params)
	}
	// An empty value returns to the file's broker at the next start.
	res, err = act(t, a, diag.ActParamsSet, `{"name":"tmsBroker","value":""}`)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.([]diag.LocalParam)[1]; p.Value != fileBroker || !p.Pending {
		t.Errorf("cleared: %+v", p)
	}
}

// TestDiagBundleHoldsNoSecret plants secrets where the bundle's sources are (configuration,
// events, logs, audit) and checks the bundle has its files and none of them.
func TestDiagBundleHoldsNoSecret(t *testing.T) {
	r := startDiagAgent(t, t.TempDir(), "", plantTMSPassword)
	a := r.a
	ctx := context.Background()
	a.event(ctx, "test.card", map[string]any{"pan": plantPAN, "text": "paid " + plantPAN, "pinBlock": plantPINBlock})
	a.log.Info("bundle line "+plantPAN, "token", plantToken, "password", plantAdminPW)
	if _, err := a.Audit().Append(ctx, audit.Event{Source: audit.SourceDiag, Actor: "t1", Action: "test",
		Fields: map[string]any{"password": plantAdminPW, "note": "card " + plantPAN}}); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := (diagTerminal{a}).Bundle(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = b
	}
	for _, name := range []string{"status.json", "history.json", "events.json", "logs/recent.txt", "audit.json",
		"audit-verify.json", "termconfig.json", "outbox.json", "services.json", "agent.json", "bundle.json"} {
		b, ok := files[name]
		if !ok {
			t.Errorf("bundle lacks %s (has %v)", name, keys(files))
			continue
		}
		if strings.HasSuffix(name, ".json") && !json.Valid(b) {
			t.Errorf("%s is not JSON", name)
		}
	}
	for name, b := range files {
		for _, secret := range []string{plantTMSPassword, plantPAN, plantPINBlock, plantToken, plantAdminPW} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret %q", name, secret)
			}
		}
	}
	if !bytes.Contains(files["events.json"], []byte(plantPANMask)) || !bytes.Contains(files["logs/recent.txt"], []byte("bundle line "+plantPANMask)) {
		t.Error("the masked card number is missing where the secret was planted: the test planted nothing")
	}
	var verify struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal(files["audit-verify.json"], &verify); err != nil || !verify.OK {
		t.Errorf("audit-verify.json: %s", files["audit-verify.json"])
	}

	// A cancelled request stops the bundle.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := (diagTerminal{a}).Bundle(cctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled bundle: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestMaskFields(t *testing.T) {
	type inner struct {
		PAN   string
		Other string
		N     int64
	}
	got := maskFields(map[string]any{
		"authToken": "x", "msg": "card " + plantPAN, "amount": int64(12345), "id": uint64(6222021234561236),
		"raw": []byte("abc"), "s": inner{PAN: plantPAN, Other: "t " + plantPAN, N: 6222021234561236}, "ok": true,
	})
	if got["authToken"] != logging.Redacted || got["msg"] != "card "+plantPANMask || got["amount"] != int64(12345) ||
		got["id"] != plantPANMask || got["raw"] != logging.Redacted || got["ok"] != true {
		t.Errorf("masked %+v", got)
	}
	s, _ := got["s"].(map[string]any)
	if s["PAN"] != plantPANMask || s["Other"] != "t "+plantPANMask || s["N"] != plantPANMask {
		t.Errorf("nested %+v", s)
	}
	if maskFields(nil) != nil {
		t.Error("nil body")
	}
}

// TestDiagECRDecisionNamesTheTechnician: a cash register's registration approved or refused
// over the diagnostics port is recorded as the technician's decision (diag.WithActor), and
// as the port's when no technician is known.
func TestDiagECRDecisionNamesTheTechnician(t *testing.T) {
	r := startDiagAgent(t, t.TempDir(), "", "")
	a := r.a
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		action, till, tech, by, entry string
		outcome                       error
	}{
		{diag.ActECRApprove, "till-1", "tech42", "diag:tech42", "ecr.register.approve", nil},
		{diag.ActECRReject, "till-2", "tech7", "diag:tech7", "ecr.register.deny", access.ErrDenied},
		{diag.ActECRApprove, "till-3", "", "diag", "ecr.register.approve", nil},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := a.ecr.access.Register(ctx, tc.till, "192.0.2.9")
			done <- err
		}()
		var id string
		waitUntil(t, tc.till+"'s request", func() bool {
			p, ok := a.ecr.access.Pending()
			id = p.ID
			return ok && p.Name == tc.till
		})
		actx := ctx
		if tc.tech != "" {
			actx = diag.WithActor(ctx, tc.tech)
		}
		if _, err := (diagTerminal{a}).Act(actx, tc.action, json.RawMessage(`{"id":"`+id+`"}`), nil); err != nil {
			t.Fatalf("%s %s: %v", tc.action, tc.till, err)
		}
		if err := <-done; !errors.Is(err, tc.outcome) {
			t.Fatalf("%s's registration ended with %v, want %v", tc.till, err, tc.outcome)
		}
		entries, err := a.Audit().Recent(100)
		if err != nil {
			t.Fatal(err)
		}
		var got []audit.Entry
		for _, e := range entries {
			if e.Action == tc.entry && e.Fields["name"] == tc.till {
				got = append(got, e)
			}
		}
		if len(got) != 1 || got[0].Actor != tc.by || got[0].Source != audit.SourceECR || got[0].Fields["by"] != tc.by {
			t.Errorf("%s of %s: entries %+v, want one by %s", tc.entry, tc.till, got, tc.by)
		}
	}
}
