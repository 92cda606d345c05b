package agent

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/supervisor"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/gpio/drawer"
)

// LevelSetter changes the agent's log level live (logging.Log has it): the diagnostics port's
// logLevel parameter.
type LevelSetter interface {
	SetLevel(slog.Level)
	Level() slog.Level
}

// Sizes of the diagnostics port's in-memory views.
const (
	diagEventsKept = 200
	diagBundleLog  = 2000 // lines of each log file in the bundle
	diagBundleAud  = 1000 // audit entries in the bundle
)

// ErrNoDevice: the terminal has no such device, or its driver is not attached now.
var ErrNoDevice = errors.New("no such device on this terminal")

// diagParts is the diagnostics port's state in the agent.
type diagParts struct {
	audit   *audit.Log
	auth    *auth.Store
	srv     *diag.Server
	addr    atomic.Value // string: where the port listens now
	events  eventRing
	history sampleRing
	cpu     cpuMeter
	recent  func(n int) []string
	level   LevelSetter
	// broker is the TMS broker this run uses: the file's tms.broker (fileBroker), or the
	// technician's tmsBroker override read at start.
	broker, fileBroker string
	wakePay            chan struct{} // unlock: sign in again now rather than at the next retry
}

// Audit is the terminal's audit log (the diagnostics port, tests).
func (a *Agent) Audit() *audit.Log { return a.diag.audit }

// DiagAddr is the address the diagnostics port listens on now ("" until it listens).
func (a *Agent) DiagAddr() string {
	s, _ := a.diag.addr.Load().(string)
	return s
}

// auditEvent appends to the audit log; a failure is logged, never passed on: the action it
// records has happened.
func (a *Agent) auditEvent(ctx context.Context, e audit.Event) {
	if a.diag.audit == nil {
		return
	}
	if _, err := a.diag.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		a.log.Error("audit entry not recorded", "source", e.Source, "action", e.Action, "err", err)
	}
}

// auditHook is the Audit option of the operator table and the cash-register registrations:
// their events become audit entries. The actor is who acted ("by", the approving
// "supervisor"), else whom it is about (an operator's "code", a cash register's "name").
func (a *Agent) auditHook(source, prefix string) func(ctx context.Context, action string, fields map[string]any) {
	return func(ctx context.Context, action string, fields map[string]any) {
		if !strings.HasPrefix(action, prefix) {
			action = prefix + action
		}
		actor := "unknown"
		for _, k := range []string{"by", "supervisor", "code", "name"} {
			if s, ok := fields[k].(string); ok && s != "" {
				actor = s
				break
			}
		}
		outcome := audit.OutcomeOK
		if strings.Contains(action, "Failed") || strings.Contains(action, "lockedOut") ||
			strings.HasSuffix(action, ".deny") || strings.HasSuffix(action, ".refused") {
			outcome = audit.OutcomeDenied
		}
		a.auditEvent(ctx, audit.Event{Source: source, Actor: actor, Action: action, Outcome: outcome, Fields: fields})
	}
}

// commandAudit records a TMS command's refusal or outcome.
func (a *Agent) commandAudit(ctx context.Context, ev command.CommandAudit) {
	outcome := audit.OutcomeOK
	switch ev.State {
	case tmsproto.StateRejected:
		outcome = audit.OutcomeDenied
	case tmsproto.StateFailed:
		outcome = audit.OutcomeFailed
	}
	kind := ev.Kind
	if kind == "" {
		kind = "unverified"
	}
	fields := map[string]any{"seq": ev.Seq}
	if ev.Ref != "" {
		fields["ref"] = ev.Ref
	}
	if ev.Reason != "" {
		fields["reason"] = string(ev.Reason)
	}
	if ev.Message != "" {
		fields["message"] = ev.Message
	}
	actor := ev.ID
	if actor == "" {
		actor = "unknown"
	}
	a.auditEvent(ctx, audit.Event{Source: audit.SourceTMS, Actor: actor, Action: "cmd." + kind, Outcome: outcome, Fields: fields})
}

// ---- events ----

// eventRing keeps the most recent events for the console, masked as the logs are.
type eventRing struct {
	mu    sync.Mutex
	lines []diag.EventLine
	next  int
	full  bool
}

func (r *eventRing) add(kind string, body map[string]any) {
	line := diag.EventLine{Time: time.Now(), Kind: kind, Fields: maskFields(body)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lines == nil {
		r.lines = make([]diag.EventLine, diagEventsKept)
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

func (r *eventRing) recent(n int) []diag.EventLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := r.next
	if r.full {
		count = len(r.lines)
	}
	if n <= 0 || n > count {
		n = count
	}
	out := make([]diag.EventLine, 0, n)
	start := (r.next - n + len(r.lines)) % max(len(r.lines), 1)
	for i := range n {
		out = append(out, r.lines[(start+i)%len(r.lines)])
	}
	return out
}

// maskFields applies the logging redaction rules to an event body: values under secret-looking
// names dropped, card numbers masked, and anything structured flattened to JSON values first so
// the masking reaches inside it.
func maskFields(body map[string]any) map[string]any {
	if len(body) == 0 {
		return nil
	}
	out := make(map[string]any, len(body))
	for k, v := range body {
		out[k] = maskValue(k, v)
	}
	return out
}

func maskValue(key string, v any) any {
	if logging.SensitiveKey(key) {
		return logging.Redacted
	}
	switch x := v.(type) {
	case nil, bool, float32, float64:
		return x
	case string:
		return logging.MaskPANs(x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		s := fmt.Sprint(x)
		if m := logging.MaskPANs(s); m != s {
			return m
		}
		return x
	case []byte:
		return logging.Redacted // raw bytes in an event are not for a console
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return logging.MaskPANs(fmt.Sprint(v))
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return logging.Redacted
	}
	return maskJSON(key, generic)
}

// maskJSON masks a decoded JSON value in place of maskValue's generic case.
func maskJSON(key string, v any) any {
	if logging.SensitiveKey(key) {
		return logging.Redacted
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = maskJSON(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskJSON("", e)
		}
		return x
	case string:
		return logging.MaskPANs(x)
	case float64:
		if x >= 1e12 {
			s := fmt.Sprintf("%.0f", x)
			if m := logging.MaskPANs(s); m != s {
				return m
			}
		}
		return x
	}
	return v
}

// ---- resource history ----

// sampleRing keeps the resource samples for the charts.
type sampleRing struct {
	mu      sync.Mutex
	samples []diag.Sample
	next    int
	full    bool
}

func (r *sampleRing) add(s diag.Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		r.samples = make([]diag.Sample, config.HistorySamples)
	}
	r.samples[r.next] = s
	r.next = (r.next + 1) % len(r.samples)
	if r.next == 0 {
		r.full = true
	}
}

func (r *sampleRing) all() []diag.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		return []diag.Sample{}
	}
	if !r.full {
		return append([]diag.Sample{}, r.samples[:r.next]...)
	}
	return append(append([]diag.Sample{}, r.samples[r.next:]...), r.samples[:r.next]...)
}

func (r *sampleRing) latest() (diag.Sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil || (!r.full && r.next == 0) {
		return diag.Sample{}, false
	}
	return r.samples[(r.next-1+len(r.samples))%len(r.samples)], true
}

// cpuMeter turns the process's CPU time into a percentage of one core over the interval
// between two readings.
type cpuMeter struct {
	mu   sync.Mutex
	wall time.Time
	cpu  time.Duration
}

func (m *cpuMeter) percent(now time.Time) float64 {
	used, ok := processCPU()
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prevWall, prevCPU := m.wall, m.cpu
	m.wall, m.cpu = now, used
	if prevWall.IsZero() || !now.After(prevWall) {
		return 0
	}
	pct := float64(used-prevCPU) / float64(now.Sub(prevWall)) * 100
	return max(pct, 0)
}

// sample reads the resources now.
func (a *Agent) sample(ctx context.Context) diag.Sample {
	now := time.Now()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sys := a.sys.Resources() // not Snapshot: its interfaces and release are not charted
	return diag.Sample{
		Time:       now,
		CPUPercent: a.diag.cpu.percent(now),
		RSSBytes:   int64(sys.ProcessRSS),
		HeapBytes:  int64(ms.HeapAlloc),
		Goroutines: runtime.NumGoroutine(),
		DiskFree:   int64(sys.DiskFree),
		DiskTotal:  int64(sys.DiskTotal),
		OutboxRecs: a.Outbox.State().Records,
	}
}

// runDiagHistory is the diag.history service: a resource sample every history_interval.
func (a *Agent) runDiagHistory(ctx context.Context) error {
	a.diag.history.add(a.sample(ctx))
	t := time.NewTicker(a.cfg.Diag.HistoryInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.diag.history.add(a.sample(ctx))
		}
	}
}

// ---- local parameters ----

// bucketDiagParams holds the parameters a technician set (name → value).
var bucketDiagParams = []byte("diag.params")

// Local parameter names.
const (
	ParamLogLevel  = "logLevel"
	ParamTMSBroker = "tmsBroker"
)

var logLevels = []string{"debug", "info", "warn", "error"}

func (a *Agent) openDiagParams() error {
	return a.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDiagParams)
		return err
	})
}

func (a *Agent) storedParam(name string) (value string, ok bool) {
	_ = a.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDiagParams); b != nil {
			if v := b.Get([]byte(name)); v != nil {
				value, ok = string(v), true
			}
		}
		return nil
	})
	return value, ok
}

func (a *Agent) storeParam(ctx context.Context, name, value string, clear bool) error {
	return a.commit.Do(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		b := tx.Bucket(bucketDiagParams)
		if clear {
			return b.Delete([]byte(name))
		}
		return b.Put([]byte(name), []byte(value))
	})
}

// applyStoredParams applies what a technician set before this start: the log level, and the
// broker override (which only a start can apply).
func (a *Agent) applyStoredParams() {
	a.diag.broker, a.diag.fileBroker = a.cfg.TMS.Broker, a.cfg.TMS.Broker
	if v, ok := a.storedParam(ParamLogLevel); ok && a.diag.level != nil {
		if lv, err := logging.ParseLevel(v); err == nil {
			a.diag.level.SetLevel(lv)
		}
	}
	if v, ok := a.storedParam(ParamTMSBroker); ok {
		if err := config.ValidBroker(v); err != nil {
			a.log.Warn("technician's TMS broker ignored", "err", err)
			return
		}
		a.log.Info("TMS broker set by a technician", "broker", displayBroker(v), "file", displayBroker(a.cfg.TMS.Broker))
		// The link and its TLS settings are made from the configuration after this.
		a.diag.broker, a.cfg.TMS.Broker = v, v
	}
}

// displayBroker is a broker URL without any credentials in it.
func displayBroker(b string) string {
	u, err := url.Parse(b)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

func (a *Agent) localParams() []diag.LocalParam {
	level := diag.LocalParam{Name: ParamLogLevel, Choices: logLevels,
		Description: "How much the agent logs; applies at once and is kept across restarts."}
	if a.diag.level != nil {
		level.Value = levelName(a.diag.level.Level())
	} else {
		level.Value = a.cfg.Log.Level
	}
	broker := diag.LocalParam{Name: ParamTMSBroker, Value: displayBroker(a.diag.broker),
		Description: "The TMS broker URL (tcp://host:1883, ssl://host:8883); empty returns to the configuration file's. Applies at the next start."}
	if v, ok := a.storedParam(ParamTMSBroker); ok && v != a.diag.broker {
		broker.Value, broker.Pending = displayBroker(v), true
	} else if !ok && a.diag.broker != a.diag.fileBroker {
		broker.Value, broker.Pending = displayBroker(a.diag.fileBroker), true
	}
	return []diag.LocalParam{level, broker}
}

type paramsSet struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (a *Agent) setParam(ctx context.Context, raw json.RawMessage) (any, error) {
	var p paramsSet
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	v := strings.TrimSpace(p.Value)
	switch p.Name {
	case ParamLogLevel:
		if a.diag.level == nil {
			return nil, errors.New("this agent's log level cannot be changed while it runs")
		}
		lv, err := logging.ParseLevel(v)
		if err != nil {
			return nil, &diag.ParamError{Reason: "logLevel: want debug, info, warn or error"}
		}
		if err := a.storeParam(ctx, ParamLogLevel, levelName(lv), false); err != nil {
			return nil, err
		}
		a.diag.level.SetLevel(lv)
		a.log.Info("log level set by a technician", "level", levelName(lv))
	case ParamTMSBroker:
		if v != "" {
			if err := config.ValidBroker(v); err != nil {
				return nil, &diag.ParamError{Reason: "tmsBroker: " + err.Error()}
			}
		}
		if err := a.storeParam(ctx, ParamTMSBroker, v, v == ""); err != nil {
			return nil, err
		}
		a.log.Info("TMS broker set by a technician; applies at the next start", "broker", displayBroker(v))
	default:
		return nil, &diag.ParamError{Reason: fmt.Sprintf("name: %q is not a local parameter (logLevel, tmsBroker)", p.Name)}
	}
	return a.localParams(), nil
}

// decodeParams decodes an action's JSON parameters strictly; empty parameters leave v zero.
func decodeParams(raw json.RawMessage, v any) error {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &diag.ParamError{Reason: err.Error()}
	}
	if dec.More() {
		return &diag.ParamError{Reason: "trailing data after the parameters"}
	}
	return nil
}

// ---- the Terminal ----

// diagTerminal is the running agent as the diagnostics port sees it.
type diagTerminal struct{ a *Agent }

var _ diag.Terminal = diagTerminal{}

func (t diagTerminal) History() []diag.Sample { return t.a.diag.history.all() }

func (t diagTerminal) Events(n int) []diag.EventLine { return t.a.diag.events.recent(n) }

func (t diagTerminal) Logs(n int) []string {
	if t.a.diag.recent == nil {
		return []string{}
	}
	lines := t.a.diag.recent(n)
	if lines == nil {
		return []string{}
	}
	return lines
}

func (t diagTerminal) Status(ctx context.Context) diag.Status {
	a := t.a
	doc := a.term.Active()
	id := a.board.Identity()
	ota := a.otaInfo()
	link := a.link.Status()
	pay := a.pay.Status()
	st := diag.Status{
		Time: time.Now(),
		Identity: diag.Identity{DeviceID: a.cfg.DeviceID, Serial: id.Serial, Model: id.Model, Vendor: id.Vendor,
			Board: a.board.Name(), TerminalID: doc.AuthHost.TerminalID, MerchantID: doc.AuthHost.MerchantID,
			MerchantName: doc.AuthHost.MerchantName},
		Agent: diag.AgentStatus{Version: buildinfo.Version, Commit: buildinfo.Commit, Target: buildinfo.Target(),
			Slot: ota.Slot, UptimeS: int64(time.Since(a.started).Seconds()), LastTrial: ota.LastTrial},
		TMS: diag.TMSStatus{Connected: link.Connected, Broker: displayBroker(a.diag.broker), Connects: link.Connects,
			Failures: link.Failures, LastError: logging.MaskPANs(link.LastError)},
		Host: diag.HostStatus{Configured: doc.AuthHost.Configured(), State: string(pay.State), Test: pay.Test,
			Reversals: pay.Reversals, Held: pay.Held},
		Hardware: []diag.Device{},
		Config:   diag.ConfigStatus{Version: doc.Version},
		Keys:     []diag.KeySlot{},
		OTA: diag.OTAStatus{Slot: ota.Slot, Components: ota.Components, Job: ota.Job, Stage: ota.Stage,
			Progress: ota.Progress, LastTrial: ota.LastTrial},
		Params: a.localParams(),
	}
	if link.ConnectedAt > 0 {
		st.TMS.ConnectedAt = time.UnixMilli(link.ConnectedAt)
	}
	if len(doc.AuthHost.Addresses) > 0 {
		st.Host.Address = doc.AuthHost.Addresses[0]
	}
	for _, d := range a.hw.Devices() {
		st.Hardware = append(st.Hardware, diag.Device{Name: d.Name, Kind: d.Kind, State: d.State, Detail: d.Detail})
	}
	ob := a.Outbox.State()
	st.Outbox = diag.OutboxStatus{Records: ob.Records, Bytes: ob.Bytes, Alarm: ob.Alarm}
	if ki := a.keysInfo(); ki != nil {
		for _, k := range ki.Keys {
			ks := diag.KeySlot{Role: k.Role, KCV: k.KCV, Alg: k.Alg}
			if k.At > 0 {
				ks.LoadedAt = time.Unix(k.At, 0)
			}
			st.Keys = append(st.Keys, ks)
		}
	}
	lic := a.lic.Status()
	st.License = diag.LicenseStatus{State: lic.State, ID: lic.ID, Features: lic.Features, Reason: lic.Reason}
	if lic.Expires > 0 {
		st.License.Expires = time.Unix(lic.Expires, 0)
	}
	st.Batch = diag.BatchStatus{Number: pay.Batch, Count: pay.Txns, Settling: pay.Settling}
	if totals, err := a.pay.Totals(); err == nil {
		st.Batch.Totals = batchTotals(totals, doc)
	}
	if s, ok := a.diag.history.latest(); ok {
		st.Resources = s
	} else {
		st.Resources = a.sample(ctx)
	}
	st.ECR = diag.ECRStatus{Listen: a.ECRAddr(), Protected: doc.ECR.ProtectedMode}
	if a.ecr.access != nil {
		if r, ok := a.ecr.access.Pending(); ok {
			st.ECR.Pending = []diag.ECRRegistration{{ID: r.ID, Name: r.Name, Remote: r.Remote, Requested: r.Since}}
		}
	}
	for _, s := range a.sup.Status() {
		if s.State == supervisor.StateRunning && s.Restarts == 0 {
			continue
		}
		st.Services = append(st.Services, diag.ServiceState{Name: s.Name, State: string(s.State), Restarts: s.Restarts,
			LastError: logging.MaskPANs(s.LastError)})
	}
	return st
}

// batchTotals splits settlement totals by region: domestic cards in the transaction currency,
// foreign ones apart (the host settles them separately).
func batchTotals(t payment.SettlementTotals, doc *termconfig.Document) []diag.BatchTotals {
	dom := "domestic"
	if c, ok := doc.DefaultCurrency(); ok && c.Alpha != "" {
		dom = c.Alpha
	}
	out := []diag.BatchTotals{{Currency: dom, SalesCount: t.DomDebitCount, SalesAmount: t.DomDebit,
		RefundCount: t.DomCreditCount, RefundAmount: t.DomCredit}}
	if t.ForDebitCount+t.ForCreditCount > 0 {
		out = append(out, diag.BatchTotals{Currency: "foreign", SalesCount: t.ForDebitCount, SalesAmount: t.ForDebit,
			RefundCount: t.ForCreditCount, RefundAmount: t.ForCredit})
	}
	return out
}

// settleResult is what settle answers on the diagnostics port.
type settleResult struct {
	Batch       int                `json:"batch"`
	Totals      []diag.BatchTotals `json:"totals"`
	DomBalanced bool               `json:"domesticBalanced"`
	ForBalanced bool               `json:"foreignBalanced"`
}

func (t diagTerminal) Act(ctx context.Context, action string, params json.RawMessage, progress func(pct int)) (any, error) {
	a := t.a
	noParams := func() error {
		var none struct{}
		return decodeParams(params, &none)
	}
	switch action {
	case diag.ActSelfTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagSelfTest(ctx, progress)
	case diag.ActPrintTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.printTestPage(ctx, func(pct int) error {
			if progress != nil {
				progress(pct)
			}
			return nil
		})
	case diag.ActCardTest:
		return a.diagCardTest(ctx, params)
	case diag.ActPINPadTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagPINPadTest(ctx)
	case diag.ActLEDTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagLEDTest(ctx)
	case diag.ActBuzzerTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagBuzzerTest(ctx)
	case diag.ActDrawerTest:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.diagDrawerTest(ctx)
	case diag.ActEchoTMS:
		if err := noParams(); err != nil {
			return nil, err
		}
		rtt, err := a.link.Ping(ctx)
		if err != nil {
			return nil, err
		}
		return diag.EchoResult{RTTMs: rtt.Milliseconds()}, nil
	case diag.ActEchoHost:
		if err := noParams(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := a.pay.Echo(ctx); err != nil {
			return nil, err
		}
		return diag.EchoResult{RTTMs: time.Since(start).Milliseconds()}, nil
	case diag.ActECRApprove, diag.ActECRReject:
		var p struct {
			ID string `json:"id"`
		}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if p.ID == "" {
			return nil, &diag.ParamError{Reason: "id: required"}
		}
		// The audit entry names who decided: the technician, when the port says who it is.
		by := "diag"
		if tech := diag.ActorFrom(ctx); tech != "" {
			by = "diag:" + tech
		}
		var err error
		if action == diag.ActECRApprove {
			err = a.ecr.access.Approve(ctx, p.ID, by)
		} else {
			err = a.ecr.access.Deny(ctx, p.ID, by)
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"id": p.ID}, nil
	case diag.ActLock:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.lockTerminal(ctx)
	case diag.ActUnlock:
		if err := noParams(); err != nil {
			return nil, err
		}
		return a.unlockTerminal(ctx)
	case diag.ActSettle:
		if err := noParams(); err != nil {
			return nil, err
		}
		st, err := a.Settle(ctx, "")
		res := settleResult{Batch: st.Batch, Totals: batchTotals(st, a.term.Active()), DomBalanced: st.DomBalanced, ForBalanced: st.ForBalanced}
		if err != nil {
			return nil, err
		}
		return res, nil
	case diag.ActParamsSet:
		return a.setParam(ctx, params)
	}
	// bundle and audit.verify are the server's own; anything else is unknown.
	return nil, fmt.Errorf("%w: %q", diag.ErrUnknownAction, action)
}

func (a *Agent) diagSelfTest(ctx context.Context, progress func(int)) (any, error) {
	results := a.hw.SelfTest(ctx, func(done, total int) {
		if progress != nil && total > 0 {
			progress(done * 100 / total)
		}
	})
	res := diag.SelfTestResult{OK: !hardware.Failed(results), Results: make([]diag.DeviceResult, 0, len(results))}
	for _, r := range results {
		res.Results = append(res.Results, diag.DeviceResult{Device: r.Device, Kind: r.Kind, OK: r.OK, Skipped: r.Skipped, Detail: r.Detail})
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if !res.OK {
		return res, fmt.Errorf("self-test failed: %s", hardware.Summary(results))
	}
	return res, nil
}

// Card test bounds: the technician presents a card within this time.
const (
	cardTestDefault = 30 * time.Second
	cardTestMax     = 180 * time.Second
)

func (a *Agent) diagCardTest(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct {
		TimeoutSec int `json:"timeoutSec"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	wait := cardTestDefault
	if p.TimeoutSec != 0 {
		wait = time.Duration(p.TimeoutSec) * time.Second
		if wait < time.Second || wait > cardTestMax {
			return nil, &diag.ParamError{Reason: fmt.Sprintf("timeoutSec: %d is outside 1..%d", p.TimeoutSec, int(cardTestMax.Seconds()))}
		}
	}
	if a.hw.CardReader() == nil {
		return nil, fmt.Errorf("card reader: %w", ErrNoDevice)
	}
	// The reader is the payments' too: a card test is refused while an update installs and
	// counts as a payment for the install's wait.
	release, err := a.gate.enter()
	if err != nil {
		return nil, err
	}
	defer release()
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	co := checkout.New(checkout.Options{Engine: a.pay, Reader: a.hw.CardReader, Pad: a.hw.PINPad,
		PINSlot: a.keys.PINKeySlot, Config: a.term.Active, Logger: a.log, CardWait: wait})
	card, err := co.ReadCard(rctx, checkout.Sale{Op: payment.OpBalance})
	if err != nil {
		return nil, fmt.Errorf("card test: %w", err)
	}
	// The mask and the entry mode only: the expiry, the track data and the full number never
	// leave the checkout.
	return diag.CardTestResult{PAN: card.Mask, EntryMode: entryMode(card.Entry)}, nil
}

func entryMode(code string) string {
	switch code {
	case "05":
		return "chip"
	case "07":
		return "contactless"
	case "02", "90":
		return "stripe"
	}
	return code
}

func (a *Agent) diagPINPadTest(ctx context.Context) (any, error) {
	pad := a.hw.PINPad()
	if pad == nil {
		return nil, fmt.Errorf("PIN pad: %w", ErrNoDevice)
	}
	if err := pad.Display(ctx, "Technician test", a.board.Identity().Serial); err != nil {
		return nil, fmt.Errorf("PIN pad display: %w", err)
	}
	if err := pad.Beep(ctx, 150*time.Millisecond, 2); err != nil {
		return nil, fmt.Errorf("PIN pad beep: %w", err)
	}
	return map[string]any{"display": true, "beep": true}, nil
}

// diagLEDTest and diagBuzzerTest run the self-test's own LED and buzzer tests through the
// hardware manager, which owns those lines (the status loop drives the LEDs).
func (a *Agent) diagLEDTest(ctx context.Context) (any, error) {
	return outputTest(a.hw.TestLEDs(ctx))
}

func (a *Agent) diagBuzzerTest(ctx context.Context) (any, error) {
	return outputTest(a.hw.TestBuzzer(ctx))
}

func outputTest(r hardware.Result, ok bool) (any, error) {
	if !ok {
		return nil, ErrNoDevice
	}
	res := diag.DeviceResult{Device: r.Device, Kind: r.Kind, OK: r.OK, Detail: r.Detail}
	if !r.OK {
		return res, fmt.Errorf("%s: %s", r.Device, r.Detail)
	}
	return res, nil
}

func (a *Agent) diagDrawerTest(ctx context.Context) (any, error) {
	if _, ok := a.board.Profile().Line(board.LineDrawer); !ok {
		return nil, fmt.Errorf("cash drawer: %w", ErrNoDevice)
	}
	pin, err := a.board.Pin(board.LineDrawer)
	if err != nil {
		return nil, fmt.Errorf("cash drawer: %w", err)
	}
	d, err := drawer.New(pin, drawer.Options{})
	if err != nil {
		return nil, err
	}
	if err := d.Kick(ctx); err != nil {
		return nil, err
	}
	return map[string]any{"pulseMs": d.Pulse().Milliseconds()}, nil
}

// ---- lock, unlock, settle: shared with the TMS commands ----

// lockTerminal takes the terminal out of service: payments are refused until unlocked.
func (a *Agent) lockTerminal(ctx context.Context) (map[string]any, error) {
	if err := a.pay.Lock(ctx); err != nil {
		return nil, err
	}
	a.log.Info("terminal locked")
	a.event(ctx, "terminal.locked", nil)
	a.triggerStats()
	return map[string]any{"state": string(a.pay.Status().State)}, nil
}

// unlockTerminal puts a locked terminal back in service; the payments service signs it in
// again at once.
func (a *Agent) unlockTerminal(ctx context.Context) (map[string]any, error) {
	if err := a.pay.Unlock(ctx); err != nil {
		return nil, err
	}
	a.log.Info("terminal unlocked")
	a.event(ctx, "terminal.unlocked", nil)
	select {
	case a.diag.wakePay <- struct{}{}:
	default:
	}
	a.triggerStats()
	return map[string]any{"state": string(a.pay.Status().State)}, nil
}

// ---- the port ----

// openDiag opens the audit log (before the operators and the cash-register registrations,
// whose events it records), the local parameters and the technicians' sign-in store.
func (a *Agent) openDiag(opts Options) error {
	a.diag.recent, a.diag.level = opts.Recent, opts.Level
	a.diag.wakePay = make(chan struct{}, 1)
	var err error
	if a.diag.audit, err = audit.Open(audit.Options{DB: a.db, Commit: a.commit, Outbox: a.Outbox, Logger: a.log}); err != nil {
		return err
	}
	if err := a.openDiagParams(); err != nil {
		return fmt.Errorf("diag: %w", err)
	}
	a.applyStoredParams()
	return nil
}

// openDiagServer makes the technicians' sign-in store and the server, once the operators
// (the administrator's password) and the terminal configuration (the policy) are open.
func (a *Agent) openDiagServer(cmdKeys tmsproto.Sign1Keys) error {
	policy := func() auth.Policy { return auth.PolicyFrom(a.term.Active().Security.Diag) }
	ids := []string{a.cfg.DeviceID}
	if s := a.board.Identity().Serial; s != "" && s != a.cfg.DeviceID {
		ids = append(ids, s)
	}
	var err error
	a.diag.auth, err = auth.Open(auth.Options{DB: a.db, Commit: a.commit, Keys: cmdKeys, IDs: ids, Policy: policy,
		Admin: a.ops.CheckAdmin, Audit: a.diag.audit, Logger: a.log.With("svc", "diag")})
	if err != nil {
		return fmt.Errorf("diag: %w", err)
	}
	a.diag.srv = diag.New(diag.Options{Terminal: diagTerminal{a}, Auth: a.diag.auth, Audit: a.diag.audit,
		Policy: policy, Logger: a.log.With("svc", "diag")})
	return nil
}

// runDiag is the diag service: it listens on [diag] listen (HTTPS off loopback) and serves
// until ctx ends.
func (a *Agent) runDiag(ctx context.Context) error {
	if a.cfg.DiagOff() {
		<-ctx.Done()
		return nil
	}
	ln, err := a.listenDiag()
	if err != nil {
		return err // the supervisor retries with backoff
	}
	a.diag.addr.Store(ln.Addr().String())
	defer a.diag.addr.Store("")
	a.log.Info("diagnostics port listening", "addr", ln.Addr().String(), "tls", a.cfg.DiagTLS())
	return a.diag.srv.Serve(ctx, ln)
}

func (a *Agent) listenDiag() (net.Listener, error) {
	var cert tls.Certificate
	if a.cfg.DiagTLS() {
		var err error
		if cert, err = a.diagCertificate(); err != nil {
			return nil, fmt.Errorf("diag: HTTPS certificate: %w", err)
		}
	}
	ln, err := net.Listen("tcp", a.cfg.Diag.Listen)
	if err != nil {
		return nil, fmt.Errorf("diag: %w", err)
	}
	if !a.cfg.DiagTLS() {
		return ln, nil
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// diagCertificate is the operator's certificate, or the terminal's own self-signed one in
// <data_dir>/diag-tls/, covering the device id and the addresses a technician may use. Its
// fingerprint is logged so that it can be pinned.
func (a *Agent) diagCertificate() (tls.Certificate, error) {
	var cert tls.Certificate
	var err error
	if a.cfg.Diag.CertFile != "" {
		cert, err = access.LoadCertificate(a.cfg.Diag.CertFile, a.cfg.Diag.KeyFile)
	} else {
		cert, err = access.LoadOrCreateCertificate(diagTLSDir(a.cfg.DataDir), a.diagCertNames(), time.Now())
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	if len(cert.Certificate) > 0 {
		sum := sha256.Sum256(cert.Certificate[0])
		a.log.Info("diagnostics port certificate", "sha256", hex.EncodeToString(sum[:]), "own", a.cfg.Diag.CertFile == "")
	}
	return cert, nil
}

func diagTLSDir(dataDir string) string { return strings.TrimRight(dataDir, "/") + "/diag-tls" }

// diagCertNames: the device id when it is a DNS label, the listen address when it is one, and
// every interface's address when the port listens on all of them.
func (a *Agent) diagCertNames() []string {
	names := certNames(a.cfg.DeviceID)
	host, _, _ := net.SplitHostPort(a.cfg.Diag.Listen)
	ip := net.ParseIP(host)
	switch {
	case ip != nil && !ip.IsUnspecified():
		names = append(names, ip.String())
	case ip != nil:
		addrs, _ := net.InterfaceAddrs()
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				names = append(names, n.IP.String())
			}
		}
	case host != "" && host != "localhost":
		names = append(names, host)
	}
	return names
}

// ---- the bundle ----

// Bundle writes the diagnostics bundle: a gzip'd tar of the status, the resource history, the
// recent events, the tails of the agent's and the cash-register exchange logs, the recent
// audit entries and their verification, the terminal configuration, the outbox and the boot
// state. Keys, passwords, tokens and PIN blocks are in none of these sources; every JSON file
// also goes through the logging redaction (secret-named values dropped, card numbers
// masked) as a safety net.
func (t diagTerminal) Bundle(ctx context.Context, w io.Writer) error {
	a := t.a
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now()
	var names []string
	add := func(name string, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		names = append(names, name)
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	addJSON := func(name string, v any) error {
		b, err := scrubbedJSON(v)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", name, err)
		}
		return add(name, b)
	}
	addLines := func(name string, lines []string) error {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(logging.MaskPANs(l))
			b.WriteByte('\n')
		}
		return add(name, []byte(b.String()))
	}

	steps := []func() error{
		func() error { return addJSON("status.json", t.Status(ctx)) },
		func() error { return addJSON("history.json", t.History()) },
		func() error { return addJSON("events.json", t.Events(diagEventsKept)) },
		func() error { return addLines("logs/recent.txt", t.Logs(0)) },
		func() error {
			if a.logs == nil {
				return nil
			}
			return addLines("logs/agent.log", tailLines(a.logs.ReadRange, now, diagBundleLog))
		},
		func() error {
			if a.ecrLog == nil {
				return nil
			}
			return addLines("logs/ecr.log", tailLines(a.ecrLog.ReadRange, now, diagBundleLog))
		},
		func() error {
			entries, err := a.diag.audit.Recent(diagBundleAud)
			if err != nil {
				return addJSON("audit.json", map[string]string{"error": err.Error()})
			}
			return addJSON("audit.json", entries)
		},
		func() error {
			rep, err := a.diag.audit.Verify(ctx)
			v := map[string]any{"ok": err == nil, "report": rep}
			if err != nil {
				v["error"] = err.Error()
			}
			return addJSON("audit-verify.json", v)
		},
		func() error { return addJSON("termconfig.json", a.term.Active()) },
		func() error { return addJSON("outbox.json", a.outboxSummary()) },
		func() error { return addJSON("services.json", a.sup.Status()) },
		func() error { return addJSON("agent.json", a.configSummary()) },
		func() error {
			if a.ota.slots == nil {
				return nil
			}
			bs, err := a.ota.slots.State()
			if err != nil {
				return addJSON("boot.json", map[string]string{"error": err.Error()})
			}
			return addJSON("boot.json", bs)
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	if err := addJSON("bundle.json", map[string]any{"created": now, "deviceId": a.cfg.DeviceID,
		"serial": a.board.Identity().Serial, "version": buildinfo.Version, "files": names}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// scrubbedJSON encodes v with the logging redaction applied to every value.
func scrubbedJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	return json.MarshalIndent(maskJSON("", generic), "", "  ")
}

// tailLines reads the last n lines of a log kept for a week at most.
func tailLines(read func(from, to time.Time, fn func([]byte) error) error, now time.Time, n int) []string {
	ring := make([]string, 0, n)
	start := 0
	err := read(now.Add(-7*24*time.Hour), now.Add(time.Minute), func(line []byte) error {
		if len(ring) < n {
			ring = append(ring, string(line))
			return nil
		}
		ring[start] = string(line)
		start = (start + 1) % n
		return nil
	})
	out := append(append([]string{}, ring[start:]...), ring[:start]...)
	if err != nil {
		out = append(out, "(reading the log failed: "+err.Error()+")")
	}
	return out
}

// outboxSummary is the uplink queue's counters and how many records wait per stream.
func (a *Agent) outboxSummary() map[string]any {
	streams := map[string]int{}
	var after uint64
	for {
		recs, err := a.Outbox.Read(after, 512)
		if err != nil || len(recs) == 0 {
			break
		}
		for _, r := range recs {
			streams[r.Stream]++
			after = r.Key
		}
	}
	st := a.Outbox.State()
	return map[string]any{"records": st.Records, "bytes": st.Bytes, "thinned": st.Thinned, "alarm": st.Alarm, "streams": streams}
}

// configSummary is the local configuration a technician needs to read, without the
// credentials: no password, no key material, the broker without user information.
func (a *Agent) configSummary() map[string]any {
	c := a.cfg
	return map[string]any{
		"deviceId": c.DeviceID, "board": c.Board, "dataDir": c.DataDir,
		"tms": map[string]any{"broker": displayBroker(a.diag.fileBroker), "brokerInUse": displayBroker(a.diag.broker),
			"username": c.Username(), "tls": c.BrokerTLS(), "commandKeyIds": commandKeyIDs(c),
			"keepalive": c.TMS.KeepAlive.String(), "statsInterval": c.TMS.StatsInterval.String()},
		"ecrListen": c.ECR.Listen, "diagListen": c.Diag.Listen, "diagTLS": c.DiagTLS(),
		"logLevel": c.Log.Level, "logFile": c.LogFile() != "",
		"keystoreBackend": c.Keystore.Backend,
	}
}

func commandKeyIDs(c *config.Config) []string {
	ids := make([]string, 0, len(c.TMS.CommandKeys))
	for _, k := range c.TMS.CommandKeys {
		ids = append(ids, k.ID)
	}
	return ids
}
