package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/broker"
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
	bin := agentBinary(t)
	cfg := e.writeConfig(e.broker.URL(), "30s", "1h", `level = "info"`)
	// The log file is on ([log] file unset → <data_dir>/logs/agent.log): rewrite "-" away.
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), "file = \"-\"\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	}()
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
	if cmd.ProcessState != nil {
		t.Fatalf("the process exited: %v", cmd.ProcessState)
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
	pki := newPKI(t, dir)
	serverCert := pki.issue(t, "broker", false)
	pool := x509.NewCertPool()
	pool.AddCert(pki.cert)
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

	clientCert := pki.issue(t, dev, true)
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	writeCert(t, certFile, keyFile, clientCert)
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
`, dev, filepath.Join(dir, "data"), brokerURL, filepath.Join(dir, "ca.crt"), certFile, keyFile,
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

	cmd := exec.Command(agentBinary(t), "run", "--config", cfgPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	}()
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

type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPKI(t testing.TB, dir string) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "posagent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &pki{cert: cert, key: key}
}

var serial int64 = 1

func (p *pki) issue(t testing.TB, cn string, client bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writeCert(t testing.TB, certFile, keyFile string, c tls.Certificate) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
