// Package agent wires the runtime: it opens the board and the durable store, builds the TMS
// link, the command dispatcher and the services, and runs them under a supervisor until the
// context ends or a command asks for a restart.
//
// Ownership is strict: each piece of durable state has one owner package (outbox, command
// journal, terminal configuration, link session counter) and this package only connects them.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/operator"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/supervisor"
	"github.com/posagent/posagent/agent/sysinfo"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmslink"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/keystore"
)

// ErrRestart is returned by Run when a command (reboot) asked for a clean restart; the caller
// re-executes the binary.
var ErrRestart = errors.New("agent: restart requested")

// LogReader reads the agent's own log for logs.upload.
type LogReader interface {
	ReadRange(from, to time.Time, fn func(line []byte) error) error
}

// Options are what Run needs beyond the configuration file.
type Options struct {
	Logger *slog.Logger
	Logs   LogReader // nil: logs.upload answers that no agent log is kept
	// Extra services started beside the built-in ones (tests use it to drive load).
	Services map[string]func(ctx context.Context, a *Agent) error
	// Recent returns the newest lines of the agent's own log, already redacted
	// (logging.Log.Recent), for the diagnostics port; nil: it shows none.
	Recent func(n int) []string
	// Level changes the log level live (logging.Log), for the diagnostics port's logLevel
	// parameter; nil: that parameter cannot be set.
	Level LevelSetter
}

// Agent is a running agent. Its fields are set up by Run and stay fixed afterwards.
type Agent struct {
	cfg      *config.Config
	log      *slog.Logger
	logs     LogReader
	board    board.Board
	db       *store.DB
	commit   *store.Committer
	Outbox   *outbox.Outbox
	disp     *command.Dispatcher
	link     *tmslink.Link
	term     *termconfig.Store
	hw       *hardware.Manager
	keys     *keystore.Store
	lic      *license.Store
	ops      *operator.Store
	approved approvals
	pay      *payment.Engine
	checkout *checkout.Checkout
	sup      *supervisor.Supervisor
	sys      *sysinfo.Collector
	ecrLog   *ecrlog.Log
	ecr      ecrAPI
	ota      otaParts
	gate     *quietGate
	diag     diagParts
	started  time.Time

	statsNow chan struct{}
	restart  chan struct{}
	once     sync.Once
}

// Run runs the agent until ctx ends (nil) or a restart is requested (ErrRestart).
func Run(ctx context.Context, cfg *config.Config, opts Options) (err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: log, logs: opts.Logs, started: time.Now(), sys: sysinfo.New(cfg.DataDir),
		statsNow: make(chan struct{}, 1), restart: make(chan struct{})}
	a.gate = newQuietGate(a)

	if a.board, err = OpenBoard(cfg, log); err != nil {
		return err
	}
	defer a.board.Close()
	if err := cfg.ResolveDeviceID(a.board.Identity().Serial); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if a.db, err = store.Open(cfg.DataDir); err != nil {
		return err
	}
	defer a.db.Close()
	a.commit = store.NewCommitter(a.db)
	defer a.commit.Close()

	if a.Outbox, err = outbox.Open(a.db, a.commit, outbox.Options{
		MaxRecords: cfg.Outbox.MaxRecords, MaxBytes: int64(cfg.Outbox.MaxBytes), Logger: log,
		OnAlarm: a.outboxAlarm,
	}); err != nil {
		return err
	}
	// The audit log first: the operators, the cash-register registrations and the commands
	// record into it from their first action.
	if err := a.openDiag(opts); err != nil {
		return err
	}
	if a.term, err = termconfig.Open(a.db); err != nil {
		return fmt.Errorf("terminal configuration: %w", err)
	}
	if a.ecrLog, err = openECRLog(cfg, log); err != nil {
		return err
	}
	defer a.ecrLog.Close()
	releaseKeys, err := cfg.ReleaseKeys()
	if err != nil {
		return err
	}
	if a.lic, err = a.openLicense(releaseKeys); err != nil {
		return fmt.Errorf("licence: %w", err)
	}
	keys, err := cfg.CommandKeys()
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		log.Warn("no trusted command keys configured: every TMS command will be rejected")
	}
	verifier, err := tmsproto.NewVerifier(keys)
	if err != nil {
		return err
	}
	// Technicians' tokens are signed by the same TMS keys as commands.
	techKeys, err := tmsproto.NewSign1Keys(keys)
	if err != nil {
		return err
	}
	if a.disp, err = command.New(command.Options{DB: a.db, Commit: a.commit, Outbox: a.Outbox, Verifier: verifier,
		ReplayWindow: cfg.TMS.ReplayWindow, Logger: log.With("svc", "command"), Audit: a.commandAudit}); err != nil {
		return err
	}
	backoff := cfg.Backoff()
	a.hw = hardware.New(hardware.Options{
		Board:   a.board,
		Backoff: func(attempt int) time.Duration { return backoff.Delay(attempt, nil) },
		Event:   a.event,
		// a.link is set below, before any service runs.
		Online:     func() bool { return a.link.Status().Connected },
		OnPadEvent: a.onPadEvent,
		Logger:     log,
	})
	if err := a.openKeystore(ctx); err != nil {
		return err
	}
	if err := a.openOperators(); err != nil {
		return fmt.Errorf("operators: %w", err)
	}
	if err := a.openPayments(ctx); err != nil {
		return err
	}
	if err := a.openECR(); err != nil {
		return err
	}
	if err := a.openDiagServer(techKeys); err != nil {
		return err
	}
	if err := a.openOTA(releaseKeys); err != nil {
		return fmt.Errorf("updates: %w", err)
	}
	a.registerCommands()
	a.registerOTA()
	a.registerLicense(a.lic)

	password, err := cfg.Password()
	if err != nil {
		return err
	}
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return err
	}
	if a.link, err = tmslink.New(tmslink.Options{
		DeviceID: cfg.DeviceID, Broker: cfg.TMS.Broker, Username: cfg.Username(), Password: password, TLS: tlsConf,
		KeepAlive: cfg.TMS.KeepAlive.D(), PingTimeout: cfg.TMS.PingTimeout.D(), ConnectTimeout: cfg.TMS.ConnectTimeout.D(),
		Backoff: cfg.Backoff(), Inflight: cfg.Outbox.Inflight, AgentVersion: buildinfo.Version,
		DB: a.db, Commit: a.commit, Outbox: a.Outbox, Inbox: a.disp, Logger: log,
		KeepAliveNow: a.tmsKeepAlive, OnBlob: a.ota.blobs.Deliver,
	}); err != nil {
		return err
	}

	a.sup = supervisor.New(supervisor.Options{Logger: log})
	services := map[string]func(context.Context) error{
		"commands":     a.disp.Run,
		"tmslink":      a.link.Run,
		"stats":        a.runStats,
		"hardware":     a.hw.Run,
		"keys":         a.runKeys,
		"license":      a.runLicense(a.lic),
		"payments":     a.runPayments,
		"logs":         a.runLogUpload,
		"ecr":          a.runECR,
		"diag":         a.runDiag,
		"diag.history": a.runDiagHistory,
	}
	for name, run := range opts.Services {
		services[name] = func(ctx context.Context) error { return run(ctx, a) }
	}
	for name, run := range services {
		if err := a.sup.Add(name, run); err != nil {
			return err
		}
	}
	a.event(ctx, "agent.started", map[string]any{"version": buildinfo.Version, "board": cfg.Board,
		"configVersion": a.term.Active().Version})
	log.Info("agent running", "device", cfg.DeviceID, "board", cfg.Board, "version", buildinfo.Version,
		"config_version", a.term.Active().Version)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	restart := false
	go func() {
		select {
		case <-a.restart:
			restart = true
			cancel()
		case <-runCtx.Done():
		}
	}()
	err = a.sup.Run(runCtx)
	log.Info("agent stopped", "restart", restart)
	if restart {
		return ErrRestart
	}
	return err
}

// OpenBoard opens the configured board, handing it the configuration's [[devices]] for the
// boards that take their devices from configuration.
func OpenBoard(cfg *config.Config, log *slog.Logger) (board.Board, error) {
	bopts := board.Options{Serial: cfg.DeviceID, DataDir: cfg.DataDir, Logger: log}
	if len(cfg.Devices) > 0 {
		bopts.Profile = &board.Profile{Name: cfg.Board, Serial: cfg.Devices}
	}
	b, err := board.Open(cfg.Board, bopts)
	if err != nil {
		return nil, fmt.Errorf("board %q: %w", cfg.Board, err)
	}
	return b, nil
}

// DataDir is where the agent keeps its durable state.
func (a *Agent) DataDir() string { return a.cfg.DataDir }

// DeviceID is the terminal's identity on the TMS.
func (a *Agent) DeviceID() string { return a.cfg.DeviceID }

// requestRestart stops every service and makes Run return ErrRestart.
func (a *Agent) requestRestart() { a.once.Do(func() { close(a.restart) }) }

// event queues an up/event record. Events are never dropped; a failure is only logged, since
// the caller has nothing better to do with it.
func (a *Agent) event(ctx context.Context, kind string, body map[string]any) {
	a.diag.events.add(kind, body)
	if _, err := a.Outbox.Append(context.WithoutCancel(ctx), tmsproto.StreamEvent, kind, body); err != nil {
		a.log.Error("event not queued", "kind", kind, "err", err)
	}
}

func (a *Agent) outboxAlarm(on bool) {
	// Called from a commit hook: queue the event from another goroutine, not inside the
	// commit that triggered it.
	go a.event(context.Background(), "outbox.alarm", map[string]any{"on": on, "state": a.Outbox.State()})
}

func tlsConfig(cfg *config.Config) (*tls.Config, error) {
	if !cfg.BrokerTLS() && cfg.TMS.CertFile == "" && cfg.TMS.CAFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName(), InsecureSkipVerify: cfg.TMS.InsecureSkipVerify} //nolint:gosec // an explicit, documented opt-in for lab brokers
	if cfg.TMS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TMS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tms.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tms.ca_file %s: no PEM certificate in it", cfg.TMS.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.TMS.CertFile != "" || cfg.TMS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TMS.CertFile, cfg.TMS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tms.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
