package tmsclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throw-away CA with a server certificate for 127.0.0.1 and a client certificate,
// written as PEM files.
type testPKI struct {
	dir                   string
	caFile                string
	serverCert            tls.Certificate
	clientCert, clientKey string
	caPool                *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := genECKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key := genECKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := leaf(2, "broker", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := leaf(3, "tms", x509.ExtKeyUsageClientAuth, nil)
	p.clientCert = filepath.Join(dir, "client.pem")
	p.clientKey = filepath.Join(dir, "client.key")
	writePEM(t, p.clientCert, "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.clientKey, "PRIVATE KEY", keyDER)
	return p
}

func genECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
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
