package tmsclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the TLS material for a broker connection, as command-line tools take it.
type TLSFiles struct {
	CAFile     string // PEM CA bundle to verify the broker with; empty: the system roots
	CertFile   string // PEM client certificate, for mutual TLS
	KeyFile    string // its PEM private key
	ServerName string // name to verify the broker's certificate against, if not the URL host
	// Insecure skips verification of the broker's certificate. Only for test brokers.
	Insecure bool
}

// Empty reports whether no TLS option is set.
func (f TLSFiles) Empty() bool { return f == TLSFiles{} }

// Config builds the tls.Config; it returns nil when no option is set.
func (f TLSFiles) Config() (*tls.Config, error) {
	if f.Empty() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.Insecure, // only on an explicit request, for test brokers
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, &InputError{Field: "TLS CA", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, inputErr("TLS CA", "%s: no PEM certificate", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, &InputError{Field: "TLS client certificate", Err: err}
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, &InputError{Field: "TLS client certificate", Err: errors.New("certificate and key go together")}
	}
	return cfg, nil
}

// String describes the options without any secret, for logs.
func (f TLSFiles) String() string {
	return fmt.Sprintf("ca=%q cert=%q server-name=%q insecure=%v", f.CAFile, f.CertFile, f.ServerName, f.Insecure)
}
