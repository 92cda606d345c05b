// Package integration runs the whole agent against a real MQTT broker (Mosquitto in CI, the
// embedded mochi broker elsewhere) with a TMS client on the other side: the tests a TMS
// integrator would write. Agents run in-process, or as child processes when a test kills them.
package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/tmsproto"
	_ "github.com/posagent/posagent/board/sim"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/internal/tmsclient"
)

// Child process mode: the test binary re-executes itself to run an agent that can be killed.
const (
	envChild = "POSAGENT_IT_CHILD" // path of the agent's configuration file
	envBurst = "POSAGENT_IT_BURST" // records per burst stream the child's load service writes
	envDebug = "POSAGENT_IT_DEBUG" // set: the child logs at debug level
)

var burstStreams = []string{tmsproto.StreamEvent, tmsproto.StreamReceipt, tmsproto.StreamLogAgent}

func TestMain(m *testing.M) {
	if path := os.Getenv(envChild); path != "" {
		os.Exit(childMain(path))
	}
	os.Exit(m.Run())
}

func childMain(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	level := slog.LevelWarn
	if os.Getenv(envDebug) != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := agent.Options{Logger: log}
	if n, _ := strconv.ParseUint(os.Getenv(envBurst), 10, 64); n > 0 {
		opts.Services = map[string]func(context.Context, *agent.Agent) error{"burst": burst(n)}
	}
	addPayLoad(&opts)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := agent.Run(ctx, cfg, opts); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// burst writes records on each burst stream until that stream's seq reaches n. It picks up
// where the last (killed) process stopped, since the seq itself is the durable counter.
func burst(n uint64) func(context.Context, *agent.Agent) error {
	return func(ctx context.Context, a *agent.Agent) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(burstStreams))
		for _, stream := range burstStreams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					last, err := a.Outbox.LastSeq(stream)
					if err != nil {
						errs <- err
						return
					}
					if last >= n {
						return
					}
					if _, err := a.Outbox.Append(ctx, stream, "burst", map[string]any{"n": last + 1, "pad": "0123456789abcdef0123456789abcdef"}); err != nil && ctx.Err() == nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
}

// env is one test's world: a broker, a TMS client watching the device, a signing key.
type env struct {
	t      testing.TB
	broker *testbroker.Broker
	tms    *tmsclient.Client
	key    tmsclient.SignKey
	device string
	dir    string

	logs *syncio.Buffer // the in-process agent's log, at debug level

	mu      sync.Mutex
	uplinks []tmsclient.Uplink
	checker *tmsclient.SeqChecker
}

func newEnv(t *testing.T, device string) *env { return newEnvTB(t, device) }

func newEnvTB(t testing.TB, device string) *env {
	t.Helper()
	e := &env{t: t, device: device, dir: t.TempDir(), checker: tmsclient.NewSeqChecker()}
	e.broker = testbroker.Start(t, testbroker.Options{Devices: []string{device}})
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.key = tmsclient.SignKey{ID: "tms-cmd-1", Key: priv}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A persistent session, so uplink published while this client is away (a broker restart)
	// is queued for it.
	e.tms, err = tmsclient.Connect(ctx, tmsclient.Options{Broker: e.broker.URL(), Username: e.broker.TMSUser(),
		Password: e.broker.TMSPassword(), ClientID: "tms-it-" + device, CleanSession: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.tms.Close)
	if _, err := e.tms.Watch(context.Background(), device, nil, e.observe); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) observe(u tmsclient.Uplink) {
	if u.Err != nil {
		e.t.Errorf("undecodable uplink on %s: %v", u.Topic, u.Err)
		return
	}
	e.mu.Lock()
	e.uplinks = append(e.uplinks, u)
	e.mu.Unlock()
	if u.Stream != tmsproto.StreamOnline {
		e.checker.Observe(u.DeviceID, u.Stream, u.Envelope.Seq)
	}
}

// configFile writes the agent's configuration for the test broker and returns its path.
func (e *env) configFile(extra string) string {
	return e.writeConfig(e.broker.URL(), "30s", "1h", extra)
}

// configFileWithBroker points the agent at another URL (a proxy); mode "stats" sends stats
// every second with a long keepalive, otherwise a 1 s keepalive with rare stats.
func (e *env) configFileWithBroker(broker, mode string) string {
	if mode == "stats" {
		return e.writeConfig(broker, "600s", "1s", "")
	}
	return e.writeConfig(broker, "1s", "1h", "")
}

func (e *env) writeConfig(broker, keepalive, stats, extra string) string {
	e.t.Helper()
	if !strings.Contains(extra, "[diag]") {
		// Agents of parallel tests and packages must not compete for the default port.
		extra += "\n[diag]\nlisten = \"127.0.0.1:0\"\n"
	}
	cfg := fmt.Sprintf(`device_id = %q
data_dir = %q
board = "sim"

[tms]
broker = %q
password = %q
keepalive = %q
backoff_base = "100ms"
backoff_cap = "1s"
stats_interval = %q

[[tms.command_keys]]
id = %q
public_key = %q

[log]
file = "-"
%s
`, e.device, filepath.Join(e.dir, "data"), broker, e.broker.DevicePassword(e.device), keepalive, stats,
		e.key.ID, tmsclient.PublicKeyBase64(e.key.Public()), extra)
	path := filepath.Join(e.dir, "posagent.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *env) resetUplinks() {
	e.mu.Lock()
	e.uplinks = nil
	e.mu.Unlock()
}

// startInProcess runs the agent in this process until the test ends.
func (e *env) startInProcess() { e.startInProcessWith("") }

// startInProcessWith adds extra to the configuration file (e.g. [[devices]]).
func (e *env) startInProcessWith(extra string) { e.startInProcessAgent(extra) }

// startInProcessAgent runs the agent in this process and returns it once its services run
// (tests drive payments through it).
func (e *env) startInProcessAgent(extra string) *agent.Agent {
	e.t.Helper()
	got := make(chan *agent.Agent, 1)
	cfg, err := config.Load(e.configFile(extra))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncio.Buffer{}
	e.logs = logs
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	services := map[string]func(context.Context, *agent.Agent) error{"test-handle": func(ctx context.Context, a *agent.Agent) error {
		select {
		case got <- a:
		default:
		}
		<-ctx.Done()
		return nil
	}}
	go func() { done <- agent.Run(ctx, cfg, agent.Options{Logger: log, Services: services}) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("agent: %v", err)
		}
		if e.t.Failed() {
			e.t.Logf("agent log:\n%s", logs.String())
		}
	})
	select {
	case a := <-got:
		return a
	case err := <-done:
		done <- err // for the cleanup
		e.t.Fatalf("agent stopped at start: %v", err)
	case <-time.After(20 * time.Second):
		e.t.Fatal("agent did not start")
	}
	return nil
}

// child is an agent in its own process.
type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

func (e *env) startChild(cfgPath string, burstN uint64) *child {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+cfgPath, envBurst+"="+strconv.FormatUint(burstN, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.done <- nil // keep the cleanup's receive from blocking
}

func (c *child) stop(t testing.TB) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Errorf("agent exit: %v\n%s", err, c.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop on SIGTERM\n%s", c.stderr.String())
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stream returns the decoded uplinks of one stream so far.
func (e *env) stream(name string) []tmsproto.Envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []tmsproto.Envelope
	for _, u := range e.uplinks {
		if u.Stream == name {
			out = append(out, *u.Envelope)
		}
	}
	return out
}

// acks returns the acks received so far that match m.
func (e *env) acks(m tmsclient.AckMatch) []tmsproto.Ack {
	var out []tmsproto.Ack
	for _, env := range e.stream(tmsproto.StreamAck) {
		var a tmsproto.Ack
		if err := tmsproto.Unmarshal(env.Body, &a); err != nil {
			e.t.Fatalf("ack body: %v", err)
		}
		if (m.ID != "" && a.ID == m.ID) || (a.ID == "" && a.Ref == m.Ref) {
			out = append(out, a)
		}
	}
	return out
}

// finalAck waits for a final ack matching m and returns it.
func (e *env) finalAck(m tmsclient.AckMatch, after int) tmsproto.Ack {
	e.t.Helper()
	var final tmsproto.Ack
	waitFor(e.t, 20*time.Second, "final ack for "+m.ID+m.Ref, func() bool {
		acks := e.acks(m)
		for _, a := range acks[min(after, len(acks)):] {
			if a.State.Final() {
				final = a
				return true
			}
		}
		return false
	})
	return final
}

// looseUnmarshal decodes CBOR ignoring fields v does not name, for tests that read one field.
func looseUnmarshal(data []byte, v any) error { return cbor.Unmarshal(data, v) }
