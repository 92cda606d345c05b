package certstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/internal/testpki"
	bolt "go.etcd.io/bbolt"
)

var ctx = context.Background()

func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func TestPutGetListRevert(t *testing.T) {
	s, _ := openStore(t)
	ca := testpki.NewCA(t)
	now := time.Now()
	caInfo, err := s.Put(ctx, "acq-root", UsageCA, pemOf("CERTIFICATE", ca.Cert.Raw), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "acq-root", Usage: UsageCA, SHA256: fingerprint(ca.Cert.Raw), Subject: "CN=posagent test CA",
		NotBefore: ca.Cert.NotBefore.Unix(), NotAfter: ca.Cert.NotAfter.Unix()}
	if caInfo != want {
		t.Fatalf("info %+v\nwant %+v", caInfo, want)
	}

	v1 := ca.Client(t, "DEV-1")
	v1.Certificate = append(v1.Certificate, ca.Cert.Raw) // with its issuer: a chain in order
	i1, err := s.Put(ctx, "tms-client", UsageClient, chainOf(v1), pkcs8(t, v1.PrivateKey), now)
	if err != nil {
		t.Fatal(err)
	}
	if i1.SHA256 != fingerprint(v1.Certificate[0]) || i1.Previous != "" || i1.Subject != "CN=DEV-1" {
		t.Fatalf("info %+v", i1)
	}
	v2 := ca.Client(t, "DEV-1")
	i2, err := s.Put(ctx, "tms-client", UsageClient, chainOf(v2), pkcs8(t, v2.PrivateKey), now)
	if err != nil {
		t.Fatal(err)
	}
	if i2.SHA256 != fingerprint(v2.Certificate[0]) || i2.Previous != i1.SHA256 {
		t.Fatalf("info %+v", i2)
	}
	// The same again (a replayed command) keeps the real previous version.
	again, err := s.Put(ctx, "tms-client", UsageClient, chainOf(v2), pkcs8(t, v2.PrivateKey), now.Add(time.Minute))
	if err != nil || again != i2 {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if got, ok, err := s.Get("tms-client"); err != nil || !ok || got != i2 {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list, []Info{caInfo, i2}) {
		t.Fatalf("list %+v", list)
	}

	if err := s.Revert(ctx, "tms-client"); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Get("tms-client")
	if i1.Previous = ""; got != i1 {
		t.Fatalf("after revert %+v, want %+v", got, i1)
	}
	kp, err := s.KeyPair("tms-client")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kp.Certificate[0], v1.Certificate[0]) || len(kp.Certificate) != 2 || !kp.PrivateKey.(*ecdsa.PrivateKey).Equal(v1.PrivateKey) {
		t.Fatal("revert did not bring back the first certificate and key")
	}
	if err := s.Revert(ctx, "tms-client"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("second revert: %v", err)
	}
	if err := s.Revert(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revert unknown: %v", err)
	}
	if _, ok, err := s.Get("nope"); ok || err != nil {
		t.Fatalf("get unknown: %v %v", ok, err)
	}
}

// What the store hands out works: a mutual TLS handshake with both sides' certificates,
// keys and trust anchors taken from it.
func TestPoolAndKeyPairMakeMutualTLS(t *testing.T) {
	s, _ := openStore(t)
	ca := testpki.NewCA(t)
	srv, cli := ca.Server(t, "ecr"), ca.Client(t, "DEV-7")
	now := time.Now()
	for _, p := range []struct {
		name  string
		usage Usage
		cert  []byte
		key   []byte
	}{
		{"root", UsageCA, pemOf("CERTIFICATE", ca.Cert.Raw), nil},
		{"ecr-https", UsageServer, chainOf(srv), pkcs8(t, srv.PrivateKey)},
		{"tms-client", UsageClient, chainOf(cli), pkcs8(t, cli.PrivateKey)},
	} {
		if _, err := s.Put(ctx, p.name, p.usage, p.cert, p.key, now); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := s.Pool("root")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := s.KeyPair("ecr-https")
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := s.KeyPair("tms-client")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvPair},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{cliPair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if cn := <-peer; cn != "DEV-7" {
		t.Fatalf("server saw %q", cn)
	}
	if !net.ParseIP("127.0.0.1").Equal(conn.ConnectionState().PeerCertificates[0].IPAddresses[0]) {
		t.Fatal("wrong server certificate")
	}

	if _, err := s.Pool("tms-client"); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("pool of a client certificate: %v", err)
	}
	if _, err := s.KeyPair("root"); !errors.Is(err, ErrWrongUsage) {
		t.Fatalf("key pair of a CA: %v", err)
	}
	if _, err := s.Pool("absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pool of nothing: %v", err)
	}
	if _, err := s.KeyPair("absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key pair of nothing: %v", err)
	}
}

func TestKeyFormats(t *testing.T) {
	s, _ := openStore(t)
	root := issue(t, caTmpl("root"), nil, nil)
	ec := issue(t, leafTmpl("ec", x509.ExtKeyUsageClientAuth), &root, nil)
	rk := rsaKey(t)
	rs := issue(t, leafTmpl("rsa", x509.ExtKeyUsageClientAuth), &root, rk)
	ecDER, err := x509.MarshalECPrivateKey(ec.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cert issued
		key  []byte
	}{
		"pkcs8-ec":  {ec, pkcs8(t, ec.key)},
		"sec1-ec":   {ec, pemOf("EC PRIVATE KEY", ecDER)},
		"pkcs1-rsa": {rs, pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))},
		"pkcs8-rsa": {rs, pkcs8(t, rk)},
	} {
		if _, err := s.Put(ctx, name, UsageClient, c.cert.pem(), c.key, time.Now()); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		kp, err := s.KeyPair(name)
		if err != nil || !bytes.Equal(kp.Leaf.Raw, c.cert.cert.Raw) {
			t.Errorf("%s: key pair %v", name, err)
		}
	}
}

// Every refusal is an *InvalidError with a useful reason, changes nothing and never shows
// the key.
func TestRefusals(t *testing.T) {
	s, db := openStore(t)
	ca := testpki.NewCA(t)
	other := testpki.NewCA(t)
	cli, cli2, srv := ca.Client(t, "DEV-1"), ca.Client(t, "DEV-2"), ca.Server(t, "srv")
	now := time.Now()
	if _, err := s.Put(ctx, "c", UsageClient, chainOf(cli), pkcs8(t, cli.PrivateKey), now); err != nil {
		t.Fatal(err)
	}
	root := issue(t, caTmpl("root"), nil, nil)
	inter := issue(t, caTmpl("inter"), &root, nil)
	leaf := issue(t, leafTmpl("leaf", x509.ExtKeyUsageClientAuth), &inter, nil)
	noSign := issue(t, &x509.Certificate{Subject: caTmpl("x").Subject, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature}, nil, nil)
	// The good chain, to be sure the out-of-order case fails only for its order.
	if _, err := s.Put(ctx, "chain", UsageClient, append(append(leaf.pem(), inter.pem()...), root.pem()...), pkcs8(t, leaf.key), now); err != nil {
		t.Fatal(err)
	}
	cliPEM, cliKey, caPEM := chainOf(cli), pkcs8(t, cli.PrivateKey), pemOf("CERTIFICATE", ca.Cert.Raw)
	truncated := cliPEM[:len(cliPEM)-40]
	badBase64 := []byte(strings.Replace(string(cliPEM), "\n", "\n*", 3))
	huge := append(bytes.Repeat([]byte("# padding\n"), MaxPEMSize/10), cliPEM...)
	encrypted := []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")

	cases := []struct {
		name      string
		certName  string
		usage     Usage
		cert, key []byte
		now       time.Time
		reason    string
	}{
		{"expired", "c", UsageClient, cliPEM, cliKey, now.Add(2 * time.Hour), "expired on"},
		{"not yet valid", "c", UsageClient, cliPEM, cliKey, now.Add(-2 * time.Hour), "not valid before"},
		{"CA as client", "c", UsageClient, caPEM, cliKey, now, "is a CA certificate"},
		{"wrong key", "c", UsageClient, cliPEM, pkcs8(t, cli2.PrivateKey), now, "does not belong"},
		{"server as client", "c", UsageClient, chainOf(srv), pkcs8(t, srv.PrivateKey), now, "extended key usage"},
		{"client as server", "c", UsageServer, cliPEM, cliKey, now, "extended key usage"},
		{"no key", "c", UsageClient, cliPEM, nil, now, "needs its private key"},
		{"broken PEM", "c", UsageClient, truncated, cliKey, now, "no PEM CERTIFICATE"},
		{"bad base64", "c", UsageClient, badBase64, cliKey, now, "no PEM CERTIFICATE"},
		{"broken block after a good one", "c", UsageClient, append(bytes.Clone(cliPEM), truncated...), cliKey, now, "is broken"},
		{"garbage", "c", UsageClient, []byte("hello, this is not a certificate"), cliKey, now, "no PEM"},
		{"DER not PEM", "c", UsageClient, cli.Certificate[0], cliKey, now, "no PEM"},
		{"not a certificate inside", "c", UsageClient, pemOf("CERTIFICATE", []byte("junk")), cliKey, now, "does not parse"},
		{"oversized", "c", UsageClient, huge, cliKey, now, "more than"},
		{"chain out of order", "c", UsageClient, append(append(leaf.pem(), root.pem()...), inter.pem()...), pkcs8(t, leaf.key), now, "certificate 1 is not signed by certificate 2"},
		{"chain of another CA", "c", UsageClient, append(bytes.Clone(cliPEM), pemOf("CERTIFICATE", other.Cert.Raw)...), cliKey, now, "not signed by"},
		{"key in the certificate field", "c", UsageClient, append(bytes.Clone(cliKey), cliPEM...), cliKey, now, "only CERTIFICATE"},
		{"two keys", "c", UsageClient, cliPEM, append(bytes.Clone(cliKey), cliKey...), now, "exactly one"},
		{"public key as key", "c", UsageClient, cliPEM, pemOf("PUBLIC KEY", []byte{1, 2, 3}), now, "want PRIVATE KEY"},
		{"key does not parse", "c", UsageClient, cliPEM, pemOf("PRIVATE KEY", []byte("secret-bytes")), now, "does not parse"},
		{"encrypted key", "c", UsageClient, cliPEM, encrypted, now, "encrypted"},
		{"key not PEM", "c", UsageClient, cliPEM, []byte("0123456789abcdef"), now, "not PEM"},
		{"CA with a key", "c", UsageCA, caPEM, cliKey, now, "without a private key"},
		{"leaf as CA", "c", UsageCA, cliPEM, nil, now, "not a CA certificate"},
		{"CA that may not sign", "c", UsageCA, noSign.pem(), nil, now, "may not sign"},
		{"bad name", "a/b", UsageCA, caPEM, nil, now, "name must match"},
		{"bad usage", "c", "signing", caPEM, nil, now, "not ca, client or server"},
	}
	raw := func() []byte {
		var out []byte
		_ = db.View(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(BucketName)).ForEach(func(k, v []byte) error {
				out = append(append(out, k...), v...)
				return nil
			})
		})
		return out
	}
	before := raw()
	for _, c := range cases {
		_, err := s.Put(ctx, c.certName, c.usage, c.cert, c.key, c.now)
		var ie *InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want *InvalidError", c.name, err)
			continue
		}
		if !strings.Contains(ie.Reason, c.reason) {
			t.Errorf("%s: reason %q, want %q in it", c.name, ie.Reason, c.reason)
		}
		if strings.Contains(err.Error(), "secret-bytes") || strings.Contains(err.Error(), "PRIVATE KEY-----") ||
			strings.Contains(err.Error(), string(cliKey[30:60])) {
			t.Errorf("%s: error shows the key: %v", c.name, err)
		}
	}
	if !bytes.Equal(raw(), before) {
		t.Fatal("a refused Put changed the bucket")
	}
}

func TestSurvivesReopenWithCommitter(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	commit := store.NewCommitter(db)
	s, err := Open(db, commit)
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t)
	cli := ca.Client(t, "DEV-1")
	info, err := s.Put(ctx, "tms-client", UsageClient, chainOf(cli), pkcs8(t, cli.PrivateKey), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	commit.Close()
	db.Close()

	db, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get("tms-client")
	if err != nil || !ok || got != info {
		t.Fatalf("after reopen %+v %v %v, want %+v", got, ok, err, info)
	}
	if _, err := s.KeyPair("tms-client"); err != nil {
		t.Fatal(err)
	}
}

// A damaged entry is reported, never mistaken for another certificate or for none, and a
// new Put replaces it.
func TestCorruptEntry(t *testing.T) {
	s, db := openStore(t)
	ca := testpki.NewCA(t)
	caPEM := pemOf("CERTIFICATE", ca.Cert.Raw)
	if _, err := s.Put(ctx, "root", UsageCA, caPEM, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		v := bytes.Clone(b.Get([]byte("root")))
		v[len(v)-5] ^= 0x40
		return b.Put([]byte("root"), v)
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get("root"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("get: %v", err)
	}
	if _, err := s.Pool("root"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("pool: %v", err)
	}
	if _, err := s.List(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("list: %v", err)
	}
	info, err := s.Put(ctx, "root", UsageCA, caPEM, nil, time.Now())
	if err != nil || info.Previous != "" {
		t.Fatalf("put over a corrupt entry: %+v %v", info, err)
	}
	if _, err := s.Pool("root"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenWithoutDB(t *testing.T) {
	if _, err := Open(nil, nil); err == nil {
		t.Fatal("no error")
	}
}
