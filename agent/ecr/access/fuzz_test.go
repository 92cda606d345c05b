package access

import (
	"context"
	"crypto"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzCheck feeds arbitrary header values to Check on a store holding one current and one
// replaced token: only the current token passes, only the replaced one is ErrSuperseded, and
// every other value gets one of the documented errors.
func FuzzCheck(f *testing.F) {
	e := newEnv(f, nil)
	e.s.wmu.Lock()
	old, err := e.s.issue(context.Background(), nil, "Fuzz", time.Time{})
	e.s.wmu.Unlock()
	if err != nil {
		f.Fatal(err)
	}
	cur, err := e.s.Revoke(context.Background(), "Fuzz", old.Refresh, old.Access)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cur.Access)
	f.Add(old.Access)
	f.Add(cur.Refresh)
	f.Fuzz(func(t *testing.T, tok string) {
		name, err := e.s.Check(tok)
		switch {
		case tok == cur.Access:
			if err != nil || name != "Fuzz" {
				t.Fatalf("current token: %q, %v", name, err)
			}
		case tok == old.Access:
			if err != ErrSuperseded || name != "Fuzz" {
				t.Fatalf("replaced token: %q, %v", name, err)
			}
		case tok == "":
			if err != ErrNoToken {
				t.Fatalf("empty: %v", err)
			}
		default:
			if err != ErrUnknownToken || name != "" {
				t.Fatalf("%q: %q, %v", tok, name, err)
			}
		}
	})
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder (the database is outside input
// after flash rot or tampering): no panic, and whatever it accepts is consistent and
// re-encodes to an equal record.
func FuzzDecodeRecord(f *testing.F) {
	r := &record{Name: "Kassa1", Registered: 1_780_000_000, Expires: 1_780_086_400,
		Access: make([]byte, 32), Refresh: make([]byte, 32),
		Old: []oldToken{{Hash: make([]byte, 32), At: 1_779_990_000}}}
	enc, err := encodeRecord(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Kassa1", enc)
	f.Add("Kassa2", enc)
	f.Fuzz(func(t *testing.T, key string, raw []byte) {
		got, err := decodeRecord([]byte(key), raw)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		if got.Name != key || !ValidName(key) || len(got.Access) != 32 || len(got.Refresh) != 32 || len(got.Old) > maxOld {
			t.Fatalf("accepted an inconsistent record %+v", got)
		}
		re, err := encodeRecord(got)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRecord([]byte(key), re)
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(got)) {
			t.Fatalf("re-encoded record differs: %v", err)
		}
	})
}

// normalize makes an empty Old list nil, as decoding an omitted field gives.
func normalize(r *record) record {
	c := *r
	if len(c.Old) == 0 {
		c.Old = nil
	}
	return c
}

// fuzzNow is the time FuzzParsePair checks validity at, fixed so the committed seed pair (made
// for it) stays valid.
var fuzzNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// FuzzParsePair feeds arbitrary PEM to the certificate and key parser (operator-supplied
// files): no panic, errors are *CertError of a known kind, and an accepted pair has a key that
// matches a certificate valid at fuzzNow.
func FuzzParsePair(f *testing.F) {
	_, certPEM, keyPEM, err := newSelfSigned([]string{"localhost"}, nil, fuzzNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM, keyPEM)
	f.Add(certPEM, certPEM)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := parsePair(certPEM, keyPEM, fuzzNow)
		if err != nil {
			var ce *CertError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *CertError", err, err)
			}
			switch ce.Kind {
			case ErrCertCorrupt, ErrKeyCorrupt, ErrKeyMismatch, ErrCertExpired, ErrCertNotYetValid:
			default:
				t.Fatalf("unexpected kind %v", ce.Kind)
			}
			return
		}
		if c.Leaf == nil || len(c.Certificate) == 0 || fuzzNow.Before(c.Leaf.NotBefore) || fuzzNow.After(c.Leaf.NotAfter) {
			t.Fatal("accepted a certificate not valid now")
		}
		pub, ok := c.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(c.Leaf.PublicKey) {
			t.Fatal("accepted a key that does not match")
		}
	})
}

// FuzzValidName checks the name rules on arbitrary strings (names come from the query string).
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"Kassa1", "", " a", "Касса №1", "a\x00", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !ValidName(name) {
			return
		}
		n := utf8.RuneCountInString(name)
		if !utf8.ValidString(name) || n < 1 || n > MaxNameLen || strings.TrimSpace(name) != name {
			t.Fatalf("accepted %q", name)
		}
		for _, r := range name {
			if unicode.IsControl(r) || r == utf8.RuneError {
				t.Fatalf("accepted %q with %U", name, r)
			}
		}
	})
}
