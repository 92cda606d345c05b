package license

import (
	"crypto/ed25519"
	"crypto/sha256"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	bolt "go.etcd.io/bbolt"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testKey is a deterministic release key, so fuzz seeds signed with it stay valid.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("posagent license test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

const (
	testSerial   = "SN-0001"
	testPlatform = "linux-arm64"
	testKid      = "rel-1"
)

var (
	relKey  = testKey(testKid)
	t0      = time.Unix(1_780_000_000, 0) // the tests' "now"
	testTer = Terminal{Serial: testSerial, Platform: testPlatform}
)

// lic is a valid licence for the test terminal at t0, changed by edit.
func lic(id string, edit ...func(*License)) License {
	l := License{V: Version, ID: id, Serial: testSerial, Platform: testPlatform,
		Features: []string{"payments", "qr"}, Issued: t0.Unix() - 60, NotBefore: t0.Unix() - 60,
		Expires: t0.Add(365 * 24 * time.Hour).Unix()}
	for _, e := range edit {
		e(&l)
	}
	return l
}

func sign(t testing.TB, key ed25519.PrivateKey, kid string, l License) []byte {
	t.Helper()
	raw, err := Sign(key, kid, l)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// clock is a settable clock for the store.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openDB(t testing.TB, dir string) *bolt.DB {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openStore(t testing.TB, db *bolt.DB, c *clock, keys map[string]ed25519.PublicKey, edit ...func(*Options)) *Store {
	t.Helper()
	o := Options{ReleaseKeys: keys, Terminal: testTer, Now: c.now, Logger: quiet}
	for _, e := range edit {
		e(&o)
	}
	s, err := Open(db, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func defaultKeys() map[string]ed25519.PublicKey {
	return map[string]ed25519.PublicKey{testKid: pub(relKey)}
}

func openReadOnly(t testing.TB, dir string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(dir+"/posagent.db", 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type boltTx = bolt.Tx
