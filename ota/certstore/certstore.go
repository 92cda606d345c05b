// Package certstore keeps the certificates delivered by cert.put (trust anchors of the
// servers the terminal connects to, its TLS client certificate, the ECR API's server
// certificate) in the bucket "certs" of the agent's database.
//
// Every certificate is checked before it is stored (chain, validity, usage, key), one
// previous version of each name is kept for Revert, and a power cut leaves either the old or
// the new entry (one bbolt transaction).
//
// Private keys are stored as given, unencrypted: the database file is 0600 in a 0700 data
// directory, as protected as everything else the agent keeps there. They never appear in
// errors, logs or Info.
package certstore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	bolt "go.etcd.io/bbolt"
)

// BucketName is the top-level bbolt bucket this package owns.
const BucketName = "certs"

// MaxPEMSize bounds the certificate and key PEM text of one Put, together.
const MaxPEMSize = 64 << 10

// maxChain bounds the certificates of one entry (a CA bundle or a chain).
const maxChain = 16

// Usage is what a certificate is for (the words of termconfig.CertUsage).
type Usage string

const (
	UsageCA     Usage = "ca"     // trust anchors for servers the terminal connects to
	UsageClient Usage = "client" // the terminal's TLS client certificate, with its key
	UsageServer Usage = "server" // the terminal's TLS server certificate, with its key
)

// Info describes a stored certificate; it never carries the key.
type Info struct {
	Name      string `cbor:"name" json:"name"`
	Usage     Usage  `cbor:"usage" json:"usage"`
	SHA256    string `cbor:"sha256" json:"sha256"` // hex SHA-256 of the leaf (first) certificate's DER
	Subject   string `cbor:"subject" json:"subject"`
	NotBefore int64  `cbor:"notBefore" json:"notBefore"` // unix s, of the leaf
	NotAfter  int64  `cbor:"notAfter" json:"notAfter"`
	Previous  string `cbor:"previous,omitempty" json:"previous,omitempty"` // SHA256 of the kept previous version
}

var (
	// ErrInvalid is matched by every *InvalidError.
	ErrInvalid = errors.New("certstore: certificate refused")
	// ErrNotFound: no certificate of that name.
	ErrNotFound = errors.New("certstore: no such certificate")
	// ErrNoPrevious: Revert of a name with no previous version.
	ErrNoPrevious = errors.New("certstore: no previous version")
	// ErrWrongUsage: Pool of a client/server certificate or KeyPair of a CA.
	ErrWrongUsage = errors.New("certstore: certificate has another usage")
	// ErrCorrupt: a stored entry fails its checksum or does not decode.
	ErrCorrupt = errors.New("certstore: stored entry is corrupt")
)

// InvalidError is a refused Put: why, in words an operator can act on. It never quotes the
// key.
type InvalidError struct {
	Name   string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("certstore: certificate %q refused: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// nameRe is termconfig's name rule, so every stored name can be referenced from the
// configuration.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// record is one version of a name.
type record struct {
	Usage     Usage    `cbor:"usage"`
	Chain     [][]byte `cbor:"chain"` // DER, leaf first
	Key       []byte   `cbor:"key,omitempty"`
	SHA256    string   `cbor:"sha256"`
	Subject   string   `cbor:"subject"`
	NotBefore int64    `cbor:"notBefore"`
	NotAfter  int64    `cbor:"notAfter"`
	Stored    int64    `cbor:"stored"`
}

func (r *record) same(o *record) bool {
	return r.Usage == o.Usage && bytes.Equal(r.Key, o.Key) &&
		slices.EqualFunc(r.Chain, o.Chain, func(a, b []byte) bool { return bytes.Equal(a, b) })
}

// entry is what a name's key holds.
type entry struct {
	Current  record  `cbor:"current"`
	Previous *record `cbor:"previous,omitempty"`
}

func (e *entry) info(name string) Info {
	i := Info{Name: name, Usage: e.Current.Usage, SHA256: e.Current.SHA256, Subject: e.Current.Subject,
		NotBefore: e.Current.NotBefore, NotAfter: e.Current.NotAfter}
	if e.Previous != nil {
		i.Previous = e.Previous.SHA256
	}
	return i
}

// Store is the certificate store.
type Store struct {
	db     *store.DB
	commit *store.Committer
}

// Open makes the bucket if needed. commit, if set, carries the writes (sharing fsyncs with
// the rest of the agent); otherwise they are plain bbolt transactions.
func Open(db *store.DB, commit *store.Committer) (*Store, error) {
	if db == nil {
		return nil, errors.New("certstore: no database")
	}
	s := &Store{db: db, commit: commit}
	err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(BucketName)) == nil {
			return ErrNotFound
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		err = s.update(context.Background(), func(*bolt.Bucket) error { return nil })
	}
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	return s, nil
}

func (s *Store) update(ctx context.Context, fn func(*bolt.Bucket) error) error {
	tx := func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(BucketName))
		if err != nil {
			return err
		}
		return fn(b)
	}
	if s.commit != nil {
		return s.commit.Do(ctx, tx)
	}
	return s.db.Update(tx)
}

func getEntry(b *bolt.Bucket, name string) (*entry, error) {
	raw := b.Get([]byte(name))
	if raw == nil {
		return nil, nil
	}
	payload, err := store.Checked(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrCorrupt, name, err)
	}
	var e entry
	if err := tmsproto.Unmarshal(payload, &e); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrCorrupt, name, err)
	}
	return &e, nil
}

func putEntry(b *bolt.Bucket, name string, e *entry) error {
	payload, err := tmsproto.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put([]byte(name), store.Check(payload))
}

// load reads one entry; nil when absent.
func (s *Store) load(name string) (*entry, error) {
	var e *entry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		var err error
		e, err = getEntry(b, name)
		return err
	})
	return e, err
}

// Put checks certPEM (and keyPEM, for client and server) and stores them under name,
// keeping the version it replaces for Revert. Putting what is already stored changes
// nothing. A refusal is an *InvalidError and leaves the store unchanged.
func (s *Store) Put(ctx context.Context, name string, usage Usage, certPEM, keyPEM []byte, now time.Time) (Info, error) {
	rec, err := check(name, usage, certPEM, keyPEM, now)
	if err != nil {
		return Info{}, err
	}
	rec.Stored = now.Unix()
	// A repeated command (a replay after a restart) must not push the real previous out.
	if cur, err := s.load(name); err != nil && !errors.Is(err, ErrCorrupt) {
		return Info{}, err
	} else if cur != nil && cur.Current.same(rec) {
		return cur.info(name), nil
	}
	var info Info
	err = s.update(ctx, func(b *bolt.Bucket) error {
		old, err := getEntry(b, name)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		e := &entry{Current: *rec}
		switch {
		case old != nil && old.Current.same(rec):
			e = old
		case old != nil:
			e.Previous = &old.Current
		}
		// A corrupt entry is replaced; there is nothing in it to keep.
		info = e.info(name)
		if e == old {
			return nil
		}
		return putEntry(b, name, e)
	})
	if err != nil {
		return Info{}, fmt.Errorf("certstore: store %q: %w", name, err)
	}
	return info, nil
}

// Revert puts the previous version of name back; it then has no previous version.
func (s *Store) Revert(ctx context.Context, name string) error {
	err := s.update(ctx, func(b *bolt.Bucket) error {
		e, err := getEntry(b, name)
		switch {
		case err != nil:
			return err
		case e == nil:
			return ErrNotFound
		case e.Previous == nil:
			return ErrNoPrevious
		}
		return putEntry(b, name, &entry{Current: *e.Previous})
	})
	if err != nil {
		return fmt.Errorf("certstore: revert %q: %w", name, err)
	}
	return nil
}

// Get describes the certificate stored under name.
func (s *Store) Get(name string) (Info, bool, error) {
	e, err := s.load(name)
	if err != nil || e == nil {
		return Info{}, false, err
	}
	return e.info(name), true, nil
}

// List describes every stored certificate, by name. A corrupt entry is an error: the caller
// must not believe a certificate is absent when it is unreadable.
func (s *Store) List() ([]Info, error) {
	var out []Info
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			e, err := getEntry(b, string(k))
			if err != nil {
				return err
			}
			out = append(out, e.info(string(k)))
			return nil
		})
	})
	return out, err
}

func (s *Store) current(name string, want ...Usage) (*record, error) {
	e, err := s.load(name)
	switch {
	case err != nil:
		return nil, err
	case e == nil:
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	case !slices.Contains(want, e.Current.Usage):
		return nil, fmt.Errorf("%w: %q is %s, want %v", ErrWrongUsage, name, e.Current.Usage, want)
	}
	return &e.Current, nil
}

// Pool is a certificate pool of the CA certificates stored under name (usage ca).
func (s *Store) Pool(name string) (*x509.CertPool, error) {
	rec, err := s.current(name, UsageCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, der := range rec.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrCorrupt, name, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// KeyPair is the TLS certificate (chain and key) stored under name (usage client or server).
func (s *Store) KeyPair(name string) (tls.Certificate, error) {
	rec, err := s.current(name, UsageClient, UsageServer)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(rec.Chain[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %q: %w", ErrCorrupt, name, err)
	}
	key, reason := parseKey(rec.Key)
	if reason != "" {
		return tls.Certificate{}, fmt.Errorf("%w: %q: %s", ErrCorrupt, name, reason)
	}
	return tls.Certificate{Certificate: slices.Clone(rec.Chain), PrivateKey: key, Leaf: leaf}, nil
}

// check validates a Put and builds the record it stores.
func check(name string, usage Usage, certPEM, keyPEM []byte, now time.Time) (*record, error) {
	bad := func(format string, args ...any) error {
		return &InvalidError{Name: name, Reason: fmt.Sprintf(format, args...)}
	}
	if !nameRe.MatchString(name) {
		return nil, bad("name must match %s", nameRe)
	}
	if usage != UsageCA && usage != UsageClient && usage != UsageServer {
		return nil, bad("usage %q is not ca, client or server", usage)
	}
	if n := len(certPEM) + len(keyPEM); n > MaxPEMSize {
		return nil, bad("%d bytes of PEM, more than %d", n, MaxPEMSize)
	}
	certs, reason := parseChain(certPEM)
	if reason != "" {
		return nil, bad("%s", reason)
	}
	leaf := certs[0]
	for i, c := range certs {
		what := describe(i, c)
		switch {
		case now.Before(c.NotBefore):
			return nil, bad("%s is not valid before %s", what, c.NotBefore.UTC().Format(time.RFC3339))
		case now.After(c.NotAfter):
			return nil, bad("%s expired on %s", what, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	var key crypto.Signer
	switch usage {
	case UsageCA:
		if len(bytes.TrimSpace(keyPEM)) > 0 {
			return nil, bad("a CA certificate is stored without a private key")
		}
		for i, c := range certs {
			if !c.IsCA {
				return nil, bad("%s is not a CA certificate", describe(i, c))
			}
			if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
				return nil, bad("%s may not sign certificates (key usage)", describe(i, c))
			}
		}
	default:
		if leaf.IsCA {
			return nil, bad("%s is a CA certificate, not a %s certificate", describe(0, leaf), usage)
		}
		want := x509.ExtKeyUsageClientAuth
		if usage == UsageServer {
			want = x509.ExtKeyUsageServerAuth
		}
		if len(leaf.ExtKeyUsage)+len(leaf.UnknownExtKeyUsage) > 0 &&
			!slices.Contains(leaf.ExtKeyUsage, want) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return nil, bad("%s is not for TLS %s authentication (extended key usage)", describe(0, leaf), usage)
		}
		for i := 0; i+1 < len(certs); i++ {
			if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
				return nil, bad("certificate %d is not signed by certificate %d: the chain must be the leaf first, then each issuer in order", i+1, i+2)
			}
		}
		if len(bytes.TrimSpace(keyPEM)) == 0 {
			return nil, bad("a %s certificate needs its private key", usage)
		}
		key, reason = parseKey(keyPEM)
		if reason != "" {
			return nil, bad("%s", reason)
		}
		pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(leaf.PublicKey) {
			return nil, bad("the private key does not belong to %s", describe(0, leaf))
		}
	}
	rec := &record{Usage: usage, Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore.Unix(), NotAfter: leaf.NotAfter.Unix()}
	if len(rec.Subject) > 256 {
		rec.Subject = rec.Subject[:256]
	}
	sum := sha256.Sum256(leaf.Raw)
	rec.SHA256 = hex.EncodeToString(sum[:])
	for _, c := range certs {
		rec.Chain = append(rec.Chain, c.Raw)
	}
	if key != nil {
		rec.Key = bytes.Clone(keyPEM)
	}
	return rec, nil
}

func describe(i int, c *x509.Certificate) string {
	cn := c.Subject.CommonName
	if len(cn) > 64 {
		cn = cn[:64]
	}
	return fmt.Sprintf("certificate %d (%q)", i+1, cn)
}

var pemBegin = []byte("-----BEGIN")

// parseChain decodes CERTIFICATE blocks. pem.Decode skips a block it cannot decode and goes
// on to the next, so the blocks found are counted against the BEGIN lines: a broken block in
// the middle must not silently shorten the chain.
func parseChain(data []byte) ([]*x509.Certificate, string) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n := len(certs) + 1
		switch {
		case block.Type != "CERTIFICATE":
			return nil, fmt.Sprintf("PEM block %d is %.40q, only CERTIFICATE blocks belong with the certificate", n, block.Type)
		case len(block.Headers) > 0:
			return nil, fmt.Sprintf("PEM block %d has headers", n)
		case n > maxChain:
			return nil, fmt.Sprintf("more than %d certificates", maxChain)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse: %v", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, "no PEM CERTIFICATE block"
	}
	if bytes.Count(data, pemBegin) != len(certs) {
		return nil, "a PEM block is broken (truncated, bad base64 or a missing END line)"
	}
	return certs, ""
}

// parseKey decodes the one private key block. Reasons never include the key or a parser's
// message about it.
func parseKey(data []byte) (crypto.Signer, string) {
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, "the private key is not PEM"
	case bytes.Count(data, pemBegin) != 1 || bytes.Contains(rest, pemBegin):
		return nil, "the private key must be exactly one PEM block"
	case len(block.Headers) > 0:
		return nil, "encrypted private keys are not supported"
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Sprintf("the key block is %.40q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Sprintf("the %s block does not parse", block.Type)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, ""
	case *rsa.PrivateKey:
		return k, ""
	case ed25519.PrivateKey:
		return k, ""
	}
	return nil, "unsupported private key type"
}
