package tmsclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/internal/testpki"
)

// testPKI is a throw-away CA with a server certificate for 127.0.0.1 and a client certificate,
// the latter and the CA written as PEM files.
type testPKI struct {
	dir                   string
	caFile                string
	serverCert            tls.Certificate
	clientCert, clientKey string
	caPool                *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := testpki.NewCA(t)
	p := &testPKI{dir: t.TempDir(), caFile: ca.File, serverCert: ca.Server(t, "broker"), caPool: ca.Pool()}
	p.clientCert, p.clientKey = testpki.WriteFiles(t, "client", ca.Client(t, "tms"))
	return p
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, url := startBroker(t, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pki.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.caPool,
	})
	ctx := testCtx(t)
	connect := func(f TLSFiles) (*Client, error) {
		cfg, err := f.Config()
		if err != nil {
			t.Fatal(err)
		}
		return Connect(ctx, Options{Broker: url, TLS: cfg, Logger: testLogger(t)})
	}

	c, err := connect(TLSFiles{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.WatchAcks(ctx, "T-1")
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if err := c.SendRaw(ctx, "T-1", []byte{0xa0}); err != nil {
		t.Fatal(err)
	}

	for name, f := range map[string]TLSFiles{
		"no client certificate": {CAFile: pki.caFile},
		"unknown CA":            {CertFile: pki.clientCert, KeyFile: pki.clientKey},
		"wrong server name":     {CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "elsewhere"},
	} {
		if c, err := connect(f); err == nil {
			c.Close()
			t.Errorf("%s: connected", name)
		}
	}
	// Insecure skips the broker's verification only; the client certificate is still needed.
	c2, err := connect(TLSFiles{Insecure: true, CertFile: pki.clientCert, KeyFile: pki.clientKey})
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	c2.Close()
}

func TestTLSFilesConfig(t *testing.T) {
	if cfg, err := (TLSFiles{}).Config(); cfg != nil || err != nil {
		t.Errorf("empty options: %v, %v", cfg, err)
	}
	pki := newTestPKI(t)
	notPEM := filepath.Join(pki.dir, "junk")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]TLSFiles{
		"missing CA":        {CAFile: filepath.Join(pki.dir, "nope")},
		"CA not PEM":        {CAFile: notPEM},
		"cert without key":  {CertFile: pki.clientCert},
		"key without cert":  {KeyFile: pki.clientKey},
		"key does not load": {CertFile: pki.clientCert, KeyFile: notPEM},
	} {
		_, err := f.Config()
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Errorf("%s: %v, want an InputError", name, err)
		}
	}
}
