package access

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the terminal's own certificate, in the directory given to LoadOrCreateCertificate.
const (
	CertFileName = "ecr-cert.pem"
	KeyFileName  = "ecr-key.pem"
)

const (
	// certLifetime is the validity of the terminal's own certificate: cash registers that pin
	// it should not have to be told of a new one every year.
	certLifetime = 10 * 365 * 24 * time.Hour
	// renewBefore renews a certificate this close to its end: the agent loads it at start and
	// may then run for weeks.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers a terminal clock slightly behind the cash register's.
	backdate = time.Hour
)

// Certificate errors; every one comes inside a *CertError.
var (
	ErrCertCorrupt     = errors.New("certificate unreadable or corrupt")
	ErrKeyCorrupt      = errors.New("private key unreadable or corrupt")
	ErrKeyMismatch     = errors.New("private key does not match the certificate")
	ErrCertExpired     = errors.New("certificate expired")
	ErrCertNotYetValid = errors.New("certificate not yet valid")
	ErrCertName        = errors.New("not a host name or IP address")
	ErrCertWrite       = errors.New("certificate could not be written")
)

// CertError is a certificate or key file that cannot be used. errors.Is matches Kind (one of
// the ErrCert*/ErrKey* values) and the underlying cause.
type CertError struct {
	Path string // the file concerned; empty when it is the pair
	Kind error
	Err  error // the cause, if any
}

func (e *CertError) Error() string {
	var b strings.Builder
	b.WriteString("access: ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Kind.Error())
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *CertError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// LoadOrCreateCertificate returns the terminal's own HTTPS server certificate, kept in dir as
// CertFileName and KeyFileName. It makes a new self-signed ECDSA P-256 one, valid ten years,
// when the files are missing, unreadable, corrupt, mismatched, expired (or within 30 days of
// it), not yet valid, or do not cover every name. names are DNS names and IP addresses mixed;
// "localhost", 127.0.0.1 and ::1 are always added. A name that is neither is an ErrCertName
// error. The error of a corrupt file is returned only when making a new pair fails too.
func LoadOrCreateCertificate(dir string, names []string, now time.Time) (tls.Certificate, error) {
	dns, ips, err := certNames(names)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	cert, loadErr := loadFiles(certPath, keyPath, now)
	if loadErr == nil {
		if missing := uncovered(cert.Leaf, dns, ips); missing != "" {
			loadErr = fmt.Errorf("does not cover %s", missing)
		} else if !now.Before(cert.Leaf.NotAfter.Add(-renewBefore)) {
			loadErr = fmt.Errorf("expires %s", cert.Leaf.NotAfter.Format(time.RFC3339))
		} else {
			return cert, nil
		}
	}
	cert, certPEM, keyPEM, err := newSelfSigned(dns, ips, now)
	if err == nil {
		err = writePair(dir, certPath, keyPath, certPEM, keyPEM)
	}
	if err != nil {
		if errors.Is(loadErr, fs.ErrNotExist) {
			return tls.Certificate{}, err
		}
		return tls.Certificate{}, fmt.Errorf("%w; making a new one: %w", loadErr, err)
	}
	reason := "missing"
	if !errors.Is(loadErr, fs.ErrNotExist) {
		reason = loadErr.Error()
	}
	sum := sha256.Sum256(cert.Leaf.Raw)
	slog.Info("ECR API certificate created", "dir", dir, "reason", reason,
		"sha256", hex.EncodeToString(sum[:]), "notAfter", cert.Leaf.NotAfter)
	return cert, nil
}

// LoadCertificate loads a certificate (chain, leaf first) and its private key supplied by an
// operator, and checks that the key matches and the certificate is valid now.
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	return loadFiles(certFile, keyFile, time.Now())
}

func loadFiles(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &CertError{Path: certFile, Kind: ErrCertCorrupt, Err: err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &CertError{Path: keyFile, Kind: ErrKeyCorrupt, Err: err}
	}
	cert, err := parsePair(certPEM, keyPEM, now)
	if err != nil {
		var ce *CertError
		if errors.As(err, &ce) {
			switch ce.Kind {
			case ErrKeyCorrupt:
				ce.Path = keyFile
			case ErrCertCorrupt, ErrCertExpired, ErrCertNotYetValid:
				ce.Path = certFile
			}
		}
		return tls.Certificate{}, err
	}
	return cert, nil
}

// parsePair decodes PEM certificate and key blocks and checks them. Errors are *CertError.
func parsePair(certPEM, keyPEM []byte, now time.Time) (tls.Certificate, error) {
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return tls.Certificate{}, &CertError{Kind: ErrCertCorrupt, Err: errors.New("no CERTIFICATE block")}
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, &CertError{Kind: ErrCertCorrupt, Err: err}
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, &CertError{Kind: ErrKeyCorrupt, Err: err}
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, &CertError{Kind: ErrKeyMismatch}
	}
	switch {
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, &CertError{Kind: ErrCertNotYetValid,
			Err: fmt.Errorf("from %s", leaf.NotBefore.Format(time.RFC3339))}
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, &CertError{Kind: ErrCertExpired,
			Err: fmt.Errorf("on %s", leaf.NotAfter.Format(time.RFC3339))}
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// parseKey returns the first private key in keyPEM: PKCS#8, SEC 1 (EC) or PKCS#1 (RSA).
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PRIVATE KEY block")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
	}
}

// certNames splits names into DNS names and IP addresses, adds the loopback names and
// removes duplicates.
func certNames(names []string) ([]string, []net.IP, error) {
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if !validHostname(n) {
			return nil, nil, &CertError{Kind: ErrCertName, Err: fmt.Errorf("%q", n)}
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	return dns, ips, nil
}

// validHostname accepts LDH labels of 1..63 characters, 253 in all.
func validHostname(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// uncovered returns the first name the certificate lacks, or "".
func uncovered(leaf *x509.Certificate, dns []string, ips []net.IP) string {
	for _, n := range dns {
		if !slices.ContainsFunc(leaf.DNSNames, func(d string) bool { return strings.EqualFold(d, n) }) {
			return n
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return ip.String()
		}
	}
	return ""
}

// newSelfSigned makes a self-signed server certificate for the names.
func newSelfSigned(dns []string, ips []net.IP, now time.Time) (tls.Certificate, []byte, []byte, error) {
	fail := func(err error) (tls.Certificate, []byte, []byte, error) {
		return tls.Certificate{}, nil, nil, &CertError{Kind: ErrCertWrite, Err: err}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)), // never zero
		Subject:               pkix.Name{CommonName: "posagent ECR API", Organization: []string{"posagent"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fail(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fail(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, keyPEM, nil
}

// writePair replaces the key and the certificate, each atomically. A cut between the two
// renames leaves a mismatched pair, which the next start detects and replaces.
func writePair(dir, certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &CertError{Path: dir, Kind: ErrCertWrite, Err: err}
	}
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return &CertError{Path: keyPath, Kind: ErrCertWrite, Err: err}
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return &CertError{Path: certPath, Kind: ErrCertWrite, Err: err}
	}
	return syncDir(dir)
}

// writeAtomic writes data to a temporary file beside path, syncs it and renames it over path,
// so path holds either the old or the new content, whole.
func writeAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod sets what path should have.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// syncDir makes the renames durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return &CertError{Path: dir, Kind: ErrCertWrite, Err: err}
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return &CertError{Path: dir, Kind: ErrCertWrite, Err: err}
	}
	return nil
}
