package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/mqtttest"
)

// testPKI is a throw-away CA with a server certificate for 127.0.0.1 and client certificates
// named after terminals, as a TMS provisions them.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{pool: x509.NewCertPool(), ca: ca, caKey: key}
	p.pool.AddCert(ca)
	p.server = p.issue(t, "broker", x509.ExtKeyUsageServerAuth)
	return p
}

func (p *testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *testPKI) clientTLS(t *testing.T, certName string) *tls.Config {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if certName != "" {
		cfg.Certificates = []tls.Certificate{p.issue(t, certName, x509.ExtKeyUsageClientAuth)}
	}
	return cfg
}

func TestMutualTLS(t *testing.T) {
	pki := newPKI(t)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	for _, certAuth := range []bool{false, true} {
		name := map[bool]string{false: "password and certificate", true: "certificate alone"}[certAuth]
		t.Run(name, func(t *testing.T) {
			b := startBroker(t, broker.Options{TLS: serverTLS, CertAuth: certAuth, Users: users, TMSUsers: []string{"tms"}})
			u := "ssl://" + b.Addr()
			mqtttest.MustDial(t, mqtttest.Conn{URL: u, User: "dev1", Pass: "pw-1", ID: "dev1", TLS: pki.clientTLS(t, "dev1")})
			if _, err := mqtttest.Dial(t, mqtttest.Conn{URL: u, User: "dev1", Pass: "pw-1", ID: "dev1", TLS: pki.clientTLS(t, "dev2")}); err == nil {
				t.Error("dev2's certificate admitted user dev1")
			}
			_, err := mqtttest.Dial(t, mqtttest.Conn{URL: u, User: "dev1", ID: "dev1", TLS: pki.clientTLS(t, "dev1")})
			if certAuth && err != nil {
				t.Errorf("certificate without password refused: %v", err)
			}
			if !certAuth && err == nil {
				t.Error("certificate without password admitted although CertAuth is off")
			}
			// Without a certificate the password alone still works (VerifyClientCertIfGiven).
			mqtttest.MustDial(t, mqtttest.Conn{URL: u, User: "dev2", Pass: "pw-2", ID: "dev2", TLS: pki.clientTLS(t, "")})
			if _, err := mqtttest.Dial(t, mqtttest.Conn{URL: "tcp://" + b.Addr(), User: "dev2", Pass: "pw-2", ID: "dev2"}); err == nil {
				t.Error("plain TCP accepted on a TLS listener")
			}
		})
	}
}
