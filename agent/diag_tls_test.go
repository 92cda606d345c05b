package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/internal/syncio"
)

// TestDiagSelfSignedCertificate: off loopback without a certificate of its own, the port
// makes one once, keeps its key private in <data_dir>/diag-tls/, logs its fingerprint, and
// uses the same one at the next start.
func TestDiagSelfSignedCertificate(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.DeviceID, cfg.Diag.Listen = t.TempDir(), "DIAG-1", "192.0.2.10:8091"
	if !cfg.DiagTLS() {
		t.Fatal("a LAN address without TLS")
	}
	logs := &syncio.Buffer{}
	a := &Agent{cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil))}
	cert, err := a.diagCertificate()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.DataDir, "diag-tls")
	st, err := os.Stat(filepath.Join(dir, access.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", st.Mode().Perm())
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("192.0.2.10"); err != nil {
		t.Errorf("the listen address is not covered: %v", err)
	}
	if err := leaf.VerifyHostname("DIAG-1"); err != nil {
		t.Errorf("the device id is not covered: %v", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	if !strings.Contains(logs.String(), hex.EncodeToString(sum[:])) {
		t.Errorf("fingerprint not logged: %s", logs.String())
	}
	again, err := a.diagCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate[0], cert.Certificate[0]) {
		t.Error("a second start made another certificate")
	}
}

// TestDiagServesHTTPSWithCertificate: with cert_file and key_file the port is HTTPS even on
// loopback; a client pinning the certificate reaches the API (which wants a session), and
// plain HTTP gets nothing.
func TestDiagServesHTTPSWithCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, err := access.LoadOrCreateCertificate(filepath.Join(dir, "pki"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "pki", access.CertFileName), filepath.Join(dir, "pki", access.KeyFileName)
	r := startDiagAgentWith(t, dir, "", "", "cert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + r.a.DiagAddr() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("HTTPS /api/status without a session: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	plain := &http.Client{}
	if resp, err := plain.Get("http://" + r.a.DiagAddr() + "/api/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP answered %d", resp.StatusCode)
		}
	}
}
