package access

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/testpki"
)

func readPair(t *testing.T, dir string) (cert, key []byte) {
	t.Helper()
	var err error
	if cert, err = os.ReadFile(filepath.Join(dir, CertFileName)); err != nil {
		t.Fatal(err)
	}
	if key, err = os.ReadFile(filepath.Join(dir, KeyFileName)); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// handshake runs a TLS handshake against c with c's leaf as the only trusted root, for host,
// over loopback TCP (net.Pipe has no buffer, and TLS 1.3 has both sides write at once).
func handshake(t *testing.T, c tls.Certificate, host string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(c.Leaf)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{c}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_ = conn.(*tls.Conn).Handshake()
		conn.Close()
	}()
	cli, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: host})
	if err == nil {
		cli.Close()
	}
	<-done
	return err
}

func TestCertificateCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	c, err := LoadOrCreateCertificate(dir, []string{"192.168.80.4", "pos-17.shop.lan", "fe80::1", "POS-17.shop.lan."}, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("key %T", c.PrivateKey)
	}
	if leaf.NotAfter.Before(now.Add(9*365*24*time.Hour)) || leaf.NotBefore.After(now) {
		t.Fatalf("validity %v – %v", leaf.NotBefore, leaf.NotAfter)
	}
	wantDNS := []string{"localhost", "pos-17.shop.lan"}
	if len(leaf.DNSNames) != len(wantDNS) || leaf.DNSNames[0] != wantDNS[0] || leaf.DNSNames[1] != wantDNS[1] {
		t.Fatalf("DNS names %v", leaf.DNSNames)
	}
	for _, ip := range []string{"127.0.0.1", "::1", "192.168.80.4", "fe80::1"} {
		if err := leaf.VerifyHostname(ip); err != nil {
			t.Errorf("IP %s: %v", ip, err)
		}
	}
	if len(leaf.IPAddresses) != 4 {
		t.Fatalf("IPs %v", leaf.IPAddresses)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "pos-17.shop.lan", "192.168.80.4"} {
		if err := handshake(t, c, host); err != nil {
			t.Errorf("handshake for %s: %v", host, err)
		}
	}
	if err := handshake(t, c, "192.168.80.5"); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
	st, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries (temporary files left?)", len(entries))
	}
	// The files hold the returned pair.
	again, err := LoadCertificate(filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate[0], c.Certificate[0]) {
		t.Fatal("files differ from the returned certificate")
	}
}

func TestCertificateReuse(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	names := []string{"10.0.0.2", "pos.lan"}
	c1, err := LoadOrCreateCertificate(dir, names, now)
	if err != nil {
		t.Fatal(err)
	}
	cert1, key1 := readPair(t, dir)
	// Same names in another order and a subset are covered: the pair is kept.
	for _, n := range [][]string{{"pos.lan", "10.0.0.2"}, {"pos.lan"}, nil} {
		c2, err := LoadOrCreateCertificate(dir, n, now.Add(5*365*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
			t.Fatalf("names %v: certificate replaced", n)
		}
	}
	cert2, key2 := readPair(t, dir)
	if !bytes.Equal(cert1, cert2) || !bytes.Equal(key1, key2) {
		t.Fatal("files rewritten")
	}
}

func TestCertificateRegenerate(t *testing.T) {
	now := time.Now()
	names := []string{"pos.lan"}
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		when  time.Time
		names []string
	}{
		{name: "new name", names: []string{"pos.lan", "192.168.1.50"}},
		{name: "expired", when: now.Add(11 * 365 * 24 * time.Hour)},
		{name: "about to expire", when: now.Add(10*365*24*time.Hour - 24*time.Hour)},
		{name: "not yet valid", when: now.Add(-48 * time.Hour)},
		{name: "corrupt cert", spoil: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, CertFileName), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		}},
		{name: "corrupt key", spoil: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, KeyFileName), []byte("garbage"))
		}},
		{name: "missing key", spoil: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, KeyFileName)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "missing cert", spoil: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, CertFileName)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key of another pair", spoil: func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := LoadOrCreateCertificate(other, names, now); err != nil {
				t.Fatal(err)
			}
			_, key := readPair(t, other)
			writeFile(t, filepath.Join(dir, KeyFileName), key)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c1, err := LoadOrCreateCertificate(dir, names, now)
			if err != nil {
				t.Fatal(err)
			}
			if c.spoil != nil {
				c.spoil(t, dir)
			}
			when, n := now, names
			if !c.when.IsZero() {
				when = c.when
			}
			if c.names != nil {
				n = c.names
			}
			c2, err := LoadOrCreateCertificate(dir, n, when)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
				t.Fatal("certificate not replaced")
			}
			if c2.Leaf.NotBefore.After(when) || !c2.Leaf.NotAfter.After(when) {
				t.Fatalf("new certificate not valid at %v", when)
			}
			dns, ips, err := certNames(n)
			if err != nil {
				t.Fatal(err)
			}
			if uncovered(c2.Leaf, dns, ips) != "" {
				t.Fatal("new certificate does not cover the names")
			}
			// And it is what the files now hold.
			onDisk, err := loadFiles(filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName), when)
			if err != nil || !bytes.Equal(onDisk.Certificate[0], c2.Certificate[0]) {
				t.Fatalf("files not updated: %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCertificateRegenerateFails: when an unusable pair cannot be replaced, the error says
// both why the old one was refused and why writing failed.
func TestCertificateRegenerateFails(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, CertFileName), []byte("not a certificate"))
	// A directory where the key should be: unreadable as a file, and no file can be renamed
	// over it.
	if err := os.MkdirAll(filepath.Join(dir, KeyFileName, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateCertificate(dir, nil, time.Now())
	if !errors.Is(err, ErrKeyCorrupt) || !errors.Is(err, ErrCertWrite) {
		t.Fatalf("err = %v", err)
	}
	var ce *CertError
	if !errors.As(err, &ce) || ce.Path == "" {
		t.Fatalf("no *CertError with a path in %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries (temporary files left?)", len(entries))
	}
}

func TestCertificateBadName(t *testing.T) {
	for _, n := range []string{"pos lan", "bad_name.lan", "-x.lan", "ünï.lan", "a..b"} {
		if _, err := LoadOrCreateCertificate(t.TempDir(), []string{n}, time.Now()); !errors.Is(err, ErrCertName) {
			t.Errorf("%q: %v", n, err)
		}
	}
}

func TestLoadCertificate(t *testing.T) {
	ca := testpki.NewCA(t)
	good := ca.Server(t, "pos")
	certFile, keyFile := testpki.WriteFiles(t, "pos", good)
	c, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Certificate[0], good.Certificate[0]) || c.Leaf == nil {
		t.Fatal("wrong certificate loaded")
	}

	// A SEC 1 ("EC PRIVATE KEY") key and a chain with the CA are accepted too.
	dir := t.TempDir()
	sec1, err := x509.MarshalECPrivateKey(good.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	chainFile, sec1File := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "sec1.key")
	writeFile(t, chainFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...))
	writeFile(t, sec1File, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	c, err = LoadCertificate(chainFile, sec1File)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 {
		t.Fatalf("chain of %d", len(c.Certificate))
	}

	_, otherKey := testpki.WriteFiles(t, "other", ca.Server(t, "other"))
	old, oldPEM, oldKey, err := newSelfSigned([]string{"localhost"}, nil, time.Now().Add(-11*365*24*time.Hour))
	if err != nil || old.Leaf == nil {
		t.Fatal(err)
	}
	expiredCert, expiredKey := filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired.key")
	writeFile(t, expiredCert, oldPEM)
	writeFile(t, expiredKey, oldKey)
	_, futPEM, futKey, err := newSelfSigned([]string{"localhost"}, nil, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	futCert, futKeyFile := filepath.Join(dir, "future.pem"), filepath.Join(dir, "future.key")
	writeFile(t, futCert, futPEM)
	writeFile(t, futKeyFile, futKey)
	garbage := filepath.Join(dir, "garbage")
	writeFile(t, garbage, []byte("garbage"))

	for _, c := range []struct {
		name, cert, key string
		want            error
		path            string
	}{
		{"mismatch", certFile, otherKey, ErrKeyMismatch, ""},
		{"expired", expiredCert, expiredKey, ErrCertExpired, expiredCert},
		{"not yet valid", futCert, futKeyFile, ErrCertNotYetValid, futCert},
		{"corrupt cert", garbage, keyFile, ErrCertCorrupt, garbage},
		{"corrupt key", certFile, garbage, ErrKeyCorrupt, garbage},
		{"cert as key", certFile, certFile, ErrKeyCorrupt, certFile},
		{"missing cert", filepath.Join(dir, "nope"), keyFile, fs.ErrNotExist, filepath.Join(dir, "nope")},
		{"missing key", certFile, filepath.Join(dir, "nope"), ErrKeyCorrupt, filepath.Join(dir, "nope")},
	} {
		_, err := LoadCertificate(c.cert, c.key)
		var ce *CertError
		if !errors.Is(err, c.want) || !errors.As(err, &ce) || ce.Path != c.path {
			t.Errorf("%s: %v (want %v, path %q)", c.name, err, c.want, c.path)
		}
	}
}
