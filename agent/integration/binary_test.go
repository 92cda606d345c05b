package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/testpki"
	"github.com/posagent/posagent/internal/tmsclient"
)

// These tests run the real posagent binary, since what they check (re-exec on reboot, the log
// file, TLS set up from the configuration file) lives in cmd/posagent and the file handling.

func sessionOf(e *env) []uint64 {
	var out []uint64
	for _, env := range e.stream(tmsproto.StreamOnline) {
		var o tmsproto.Online
		if tmsproto.Unmarshal(env.Body, &o) == nil && o.Online {
			out = append(out, o.Session)
		}
	}
	return out
}

func TestRebootRestartsInPlaceAndLogsUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary; skipped with -short")
	}
	const dev = "IT-BIN-1"
	e := newEnv(t, dev)
	cfg := e.writeConfig(e.broker.URL(), "30s", "1h", `level = "info"`)
	// The log file is on ([log] file unset → <data_dir>/logs/agent.log): rewrite "-" away.
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), "file = \"-\"\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := startBinary(t, cfg)
	waitFor(t, 20*time.Second, "online", func() bool { return len(sessionOf(e)) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	if a := e.finalAck(sent.Match(), 0); a.State != tmsproto.StateSucceeded {
		t.Fatalf("reboot: %+v", a)
	}
	// Same process (exec keeps the pid), a new session, a second agent.started event.
	waitFor(t, 20*time.Second, "the agent back online", func() bool { return len(sessionOf(e)) >= 2 })
	// Signal 0 probes the pid: the same process is still there, now running the new image.
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the agent's process is gone: %v", err)
	}
	waitFor(t, 10*time.Second, "second agent.started", func() bool {
		n := 0
		for _, ev := range e.stream(tmsproto.StreamEvent) {
			if ev.Kind == "agent.started" {
				n++
			}
		}
		return n == 2
	})

	// The agent's own log comes up on request, in batches, without secrets.
	body, err := tmsproto.Marshal(map[string]any{"log": "agent", "from": time.Now().Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	sent, err = e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "logs.upload", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	a := e.finalAck(sent.Match(), 0)
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("logs.upload: %+v", a)
	}
	var res struct {
		Lines   int `cbor:"lines"`
		Batches int `cbor:"batches"`
	}
	if err := looseUnmarshal(a.Result, &res); err != nil || res.Lines == 0 {
		t.Fatalf("logs.upload result %+v %v", res, err)
	}
	waitFor(t, 10*time.Second, "log batches", func() bool { return len(e.stream(tmsproto.StreamLogAgent)) >= res.Batches })
	var all strings.Builder
	for _, env := range e.stream(tmsproto.StreamLogAgent) {
		var b struct {
			Lines []string `cbor:"lines"`
		}
		if err := looseUnmarshal(env.Body, &b); err != nil {
			t.Fatal(err)
		}
		all.WriteString(strings.Join(b.Lines, "\n"))
	}
	if !strings.Contains(all.String(), "agent running") || !strings.Contains(all.String(), "TMS link up") {
		t.Fatalf("uploaded log lacks the start-up lines:\n%s", all.String())
	}
	if strings.Contains(all.String(), e.broker.DevicePassword(dev)) {
		t.Fatal("the uploaded log contains the broker password")
	}
}

// TestMutualTLS: the agent connects over TLS with a client certificate named after it, both
// from its configuration file, and commands work across it.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary; skipped with -short")
	}
	const dev = "IT-TLS-1"
	dir := t.TempDir()
	ca := testpki.NewCA(t)
	serverCert := ca.Server(t, "broker")
	pool := ca.Pool()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := broker.Start(ctx, broker.Options{
		Addr: "127.0.0.1:0",
		TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
			ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		// The device has no password: its certificate is its only credential.
		Users: map[string]string{"tms": "tms-pw"}, TMSUsers: []string{"tms"}, CertAuth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	brokerURL := "ssl://" + b.Addr()

	certFile, keyFile := testpki.WriteFiles(t, "agent", ca.Client(t, dev))
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sk := tmsclient.SignKey{ID: "tls-cmd", Key: key}
	cfg := fmt.Sprintf(`device_id = %q
data_dir = %q
board = "sim"

[tms]
broker = %q
ca_file = %q
cert_file = %q
key_file = %q
server_name = "127.0.0.1"
backoff_base = "100ms"
backoff_cap = "1s"

[[tms.command_keys]]
id = "tls-cmd"
public_key = %q

[log]
file = "-"
`, dev, filepath.Join(dir, "data"), brokerURL, ca.File, certFile, keyFile,
		tmsclient.PublicKeyBase64(sk.Public()))
	cfgPath := filepath.Join(dir, "posagent.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	tmsTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	defer ccancel()
	tms, err := tmsclient.Connect(cctx, tmsclient.Options{Broker: brokerURL, Username: "tms", Password: "tms-pw", TLS: tmsTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer tms.Close()
	var online atomic.Bool
	if _, err := tms.Watch(cctx, dev, []string{tmsproto.StreamOnline}, func(u tmsclient.Uplink) {
		var o tmsproto.Online
		if u.Err == nil && tmsproto.Unmarshal(u.Envelope.Body, &o) == nil && o.Online {
			online.Store(true)
		}
	}); err != nil {
		t.Fatal(err)
	}
	waiter, err := tms.WatchAcks(cctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Stop()

	startBinary(t, cfgPath)
	// Commands queue at the broker only for a session that exists: wait for the first connect.
	waitFor(t, 20*time.Second, "the agent online over TLS", func() bool { return online.Load() })
	sent, err := tms.Send(cctx, dev, sk, tmsproto.Command{Kind: "stats.now"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := waiter.Await(cctx, sent.Match(), nil)
	if err != nil || a.State != tmsproto.StateSucceeded {
		t.Fatalf("stats.now over mutual TLS: %+v %v", a, err)
	}
}
