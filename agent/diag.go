package agent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/tmsproto"
)

// LevelSetter changes the agent's log level live (logging.Log has it): the diagnostics port's
// logLevel parameter.
type LevelSetter interface {
	SetLevel(slog.Level)
	Level() slog.Level
}

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

// ---- the Terminal ----

// diagTerminal is the running agent as the diagnostics port sees it. Its methods are split by
// concern: Status in diag_status.go, Act in diag_actions.go, History, Events and Logs in
// diag_history.go, Bundle in diag_bundle.go.
type diagTerminal struct{ a *Agent }

var _ diag.Terminal = diagTerminal{}

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
