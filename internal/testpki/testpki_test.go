package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

func TestMutualTLSHandshake(t *testing.T) {
	ca := NewCA(t)
	srv := ca.Server(t, "broker")
	cli := ca.Client(t, "DEV-1")
	certFile, keyFile := WriteFiles(t, "dev", cli)
	loaded, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- err.Error()
			return
		}
		got <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{loaded}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if cn := <-got; cn != "DEV-1" {
		t.Fatalf("server saw client %q", cn)
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	if net.ParseIP("127.0.0.1").Equal(srv.Leaf.IPAddresses[0]) == false {
		t.Fatal("server certificate lacks 127.0.0.1")
	}
}
