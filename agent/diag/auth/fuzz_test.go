package auth

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

// fuzzKey signs the valid seeds of testdata/fuzz/FuzzParseToken, so mutations of a real token
// reach the claims checks.
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

const fuzzKID = "tms-fuzz"

func FuzzParseToken(f *testing.F) {
	good, err := IssueToken(fuzzKey, fuzzKID, claims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("pat1.")
	f.Add("")
	keys, err := tmsproto.NewSign1Keys(map[string]ed25519.PublicKey{fuzzKID: fuzzKey.Public().(ed25519.PublicKey)})
	if err != nil {
		f.Fatal(err)
	}
	p := DefaultPolicy()
	p.Revoked = map[string]bool{"revoked-1": true}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseToken(text, keys, t0, p, testSerial, testDevice)
		if err != nil {
			n := 0
			for _, e := range allTokenErrors {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v wraps %d token errors, want exactly 1", err, n)
			}
			if len(text) > 40 && strings.Contains(err.Error(), text[:40]) {
				t.Fatalf("error quotes the input: %v", err)
			}
			return
		}
		// Accepted: the claims obey every rule, and reissuing them gives back the same token.
		if !c.Role.Known() || !c.Matches(testSerial, testDevice) || c.Expires <= t0.Unix() ||
			time.Duration(c.Expires-c.IssuedAt)*time.Second > p.TokenMaxTTL || p.Revoked[c.ID] {
			t.Fatalf("accepted claims %+v break a rule", c)
		}
		again, err := IssueToken(fuzzKey, fuzzKID, c)
		if err != nil {
			t.Fatalf("accepted claims cannot be reissued: %v", err)
		}
		if again != strings.TrimSpace(text) {
			t.Fatalf("accepted token %q is not the canonical form %q", text, again)
		}
	})
}
