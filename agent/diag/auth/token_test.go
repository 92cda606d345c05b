package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestTokenRoundTrip(t *testing.T) {
	k := newSigner(t, "tms-1")
	want := claims(func(c *Claims) { c.Terminals = []string{"OTHER", testSerial} })
	tok := k.token(t, want)
	if !strings.HasPrefix(tok, TokenPrefix) || strings.ContainsAny(tok[len(TokenPrefix):], "+/=. \n") {
		t.Fatalf("token text %q is not pat1. + unpadded base64url", tok)
	}
	got, err := ParseToken(tok, keysOf(t, k), t0, DefaultPolicy(), testSerial, testDevice)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.Technician != want.Technician || got.Name != want.Name || got.Role != want.Role ||
		got.IssuedAt != want.IssuedAt || got.Expires != want.Expires || len(got.Terminals) != 2 {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	// A pasted token with surrounding white space is the same token.
	if _, err := ParseToken("\n  "+tok+"\r\n", keysOf(t, k), t0, DefaultPolicy(), testSerial); err != nil {
		t.Fatalf("token with white space: %v", err)
	}
	// Issuing is deterministic for the same claims apart from nothing: Ed25519 is deterministic.
	if again := k.token(t, want); again != tok {
		t.Fatal("the same claims signed twice give different tokens")
	}
}

func TestParseTokenTerminalMatching(t *testing.T) {
	k := newSigner(t, "tms-1")
	for _, tc := range []struct {
		terms []string
		ok    bool
	}{
		{[]string{testSerial}, true},
		{[]string{testDevice}, true}, // the device id matches as well as the serial
		{[]string{"*"}, true},
		{[]string{"SN100*"}, true},
		{[]string{"SN1002000*"}, false}, // prefix longer than the serial
		{[]string{"SN999*", "dev-*"}, true},
		{[]string{"SN10020"}, false}, // an exact id is not a prefix
		{[]string{"sn100200"}, false},
		{[]string{"SN100200X"}, false},
	} {
		tok := k.token(t, claims(func(c *Claims) { c.Terminals = tc.terms }))
		_, err := ParseToken(tok, keysOf(t, k), t0, DefaultPolicy(), testSerial, testDevice)
		if tc.ok && err != nil {
			t.Errorf("%q: %v", tc.terms, err)
		}
		if !tc.ok && !errors.Is(err, ErrTokenWrongTerminal) {
			t.Errorf("%q: got %v, want ErrTokenWrongTerminal", tc.terms, err)
		}
	}
	// No ids at all: only "*" can match.
	tok := k.token(t, claims())
	if _, err := ParseToken(tok, keysOf(t, k), t0, DefaultPolicy(), "", ""); !errors.Is(err, ErrTokenWrongTerminal) {
		t.Fatalf("no ids: %v", err)
	}
}

func TestParseTokenRefusals(t *testing.T) {
	k := newSigner(t, "tms-1")
	other := newSigner(t, "tms-1") // same key id, different key: a forgery
	stranger := newSigner(t, "rogue")
	keys := keysOf(t, k)
	valid := k.token(t, claims())
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(valid, TokenPrefix))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), raw...)
	// The payload sits before the 64-byte signature; change one byte of a claim's text.
	idx := strings.Index(string(flipped), "tech42")
	if idx < 0 {
		t.Fatal("technician not found in the encoding")
	}
	flipped[idx] = 'T'
	tampered := TokenPrefix + base64.RawURLEncoding.EncodeToString(flipped)

	// A token with a role the terminal does not know, properly signed.
	payload, err := tmsproto.Marshal(claims(func(c *Claims) { c.Role = "god" }))
	if err != nil {
		t.Fatal(err)
	}
	cose, err := tmsproto.Sign1(k.priv, k.kid, payload)
	if err != nil {
		t.Fatal(err)
	}
	badRole := TokenPrefix + base64.RawURLEncoding.EncodeToString(cose)

	// A signed payload missing a field (no "terms"): not the deterministic encoding of Claims.
	short, err := tmsproto.Marshal(map[string]any{"jti": "x1", "sub": "tech42", "role": "service",
		"iat": t0.Unix() - 10, "exp": t0.Unix() + 10})
	if err != nil {
		t.Fatal(err)
	}
	cose, err = tmsproto.Sign1(k.priv, k.kid, short)
	if err != nil {
		t.Fatal(err)
	}
	missing := TokenPrefix + base64.RawURLEncoding.EncodeToString(cose)

	revoked := DefaultPolicy()
	revoked.Revoked = map[string]bool{"tok-1": true}
	short1h := DefaultPolicy()
	short1h.TokenMaxTTL = time.Hour

	for _, tc := range []struct {
		name string
		tok  string
		now  time.Time
		p    Policy
		want error
	}{
		{"empty", "", t0, DefaultPolicy(), ErrTokenMalformed},
		{"no prefix", strings.TrimPrefix(valid, TokenPrefix), t0, DefaultPolicy(), ErrTokenMalformed},
		{"other version", "pat2." + strings.TrimPrefix(valid, TokenPrefix), t0, DefaultPolicy(), ErrTokenMalformed},
		{"not base64", TokenPrefix + "!!!!", t0, DefaultPolicy(), ErrTokenMalformed},
		{"padded", valid + "==", t0, DefaultPolicy(), ErrTokenMalformed},
		{"truncated", valid[:len(valid)-10], t0, DefaultPolicy(), ErrTokenMalformed},
		{"oversized", TokenPrefix + strings.Repeat("A", MaxTokenSize), t0, DefaultPolicy(), ErrTokenMalformed},
		{"missing field", missing, t0, DefaultPolicy(), ErrTokenMalformed},
		{"forged same kid", other.token(t, claims()), t0, DefaultPolicy(), ErrTokenSignature},
		{"unknown key", stranger.token(t, claims()), t0, DefaultPolicy(), ErrTokenSignature},
		{"tampered", tampered, t0, DefaultPolicy(), ErrTokenSignature},
		{"unknown role", badRole, t0, DefaultPolicy(), ErrTokenRole},
		{"expired", valid, time.Unix(claims().Expires, 0), DefaultPolicy(), ErrTokenExpired},
		{"not yet", k.token(t, claims(func(c *Claims) { c.IssuedAt = t0.Add(ClockSkew + time.Second).Unix() })),
			t0, DefaultPolicy(), ErrTokenNotYet},
		{"too long", valid, t0, short1h, ErrTokenTooLong},
		{"too long by default", k.token(t, claims(func(c *Claims) { c.Expires = c.IssuedAt + 8*86400 })),
			t0, DefaultPolicy(), ErrTokenTooLong},
		{"revoked", valid, t0, revoked, ErrTokenRevoked},
		{"wrong terminal", k.token(t, claims(func(c *Claims) { c.Terminals = []string{"SN9"} })), t0,
			DefaultPolicy(), ErrTokenWrongTerminal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseToken(tc.tok, keys, tc.now, tc.p, testSerial, testDevice)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, e := range allTokenErrors {
				if e != tc.want && errors.Is(err, e) {
					t.Fatalf("%v also matches %v", err, e)
				}
			}
			if tc.tok != "" && len(tc.tok) > 20 && strings.Contains(err.Error(), tc.tok[len(TokenPrefix):len(TokenPrefix)+16]) {
				t.Fatalf("error quotes the token: %v", err)
			}
			// Claims come back only once the signature verified.
			if errors.Is(err, ErrTokenMalformed) || errors.Is(err, ErrTokenSignature) {
				if c.ID != "" || c.Technician != "" {
					t.Fatalf("claims %+v returned from an unverified token", c)
				}
			} else if c.Technician != "tech42" {
				t.Fatalf("verified but refused token: claims %+v, want the technician for the audit", c)
			}
		})
	}
}

var allTokenErrors = []error{ErrTokenMalformed, ErrTokenSignature, ErrTokenExpired, ErrTokenNotYet, ErrTokenTooLong,
	ErrTokenWrongTerminal, ErrTokenRevoked, ErrTokenRole}

func TestParseTokenTimeEdges(t *testing.T) {
	k := newSigner(t, "tms-1")
	c := claims()
	tok := k.token(t, c)
	exp := time.Unix(c.Expires, 0)
	if _, err := ParseToken(tok, keysOf(t, k), exp.Add(-time.Second), DefaultPolicy(), testSerial); err != nil {
		t.Fatalf("one second before exp: %v", err)
	}
	if _, err := ParseToken(tok, keysOf(t, k), exp, DefaultPolicy(), testSerial); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("at exp: %v", err)
	}
	// Issued a little in the future (the terminal's clock is behind): accepted within the skew.
	ahead := k.token(t, claims(func(c *Claims) { c.IssuedAt = t0.Add(ClockSkew).Unix() }))
	if _, err := ParseToken(ahead, keysOf(t, k), t0, DefaultPolicy(), testSerial); err != nil {
		t.Fatalf("iat at the skew limit: %v", err)
	}
	// Exactly the maximum lifetime is allowed.
	p := DefaultPolicy()
	p.TokenMaxTTL = 8 * time.Hour
	exact := k.token(t, claims(func(c *Claims) { c.Expires = c.IssuedAt + 8*3600 }))
	if _, err := ParseToken(exact, keysOf(t, k), t0, p, testSerial); err != nil {
		t.Fatalf("lifetime equal to the maximum: %v", err)
	}
}

func TestIssueTokenRefusesBadClaims(t *testing.T) {
	k := newSigner(t, "tms-1")
	for name, edit := range map[string]func(c *Claims){
		"no id":           func(c *Claims) { c.ID = "" },
		"id with space":   func(c *Claims) { c.ID = "a b" },
		"no technician":   func(c *Claims) { c.Technician = "" },
		"control in name": func(c *Claims) { c.Name = "a\nb" },
		"long name":       func(c *Claims) { c.Name = strings.Repeat("ж", 65) },
		"no terminals":    func(c *Claims) { c.Terminals = nil },
		"empty terminal":  func(c *Claims) { c.Terminals = []string{""} },
		"inner star":      func(c *Claims) { c.Terminals = []string{"S*N"} },
		"too many terms":  func(c *Claims) { c.Terminals = make([]string, maxTerminals+1) },
		"exp before iat":  func(c *Claims) { c.Expires = c.IssuedAt },
		"zero iat":        func(c *Claims) { c.IssuedAt = 0 },
		"unknown role":    func(c *Claims) { c.Role = "admin" },
	} {
		if _, err := k.IssueToken(claims(edit)); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
	if _, err := IssueToken(k.priv, "", claims()); err == nil {
		t.Error("empty kid: issued")
	}
	if _, err := IssueToken(k.priv[:10], "x", claims()); err == nil {
		t.Error("short key: issued")
	}
	// Many long terminal ids make a token over the size bound: refused at issue, not later.
	many := make([]string, maxTerminals)
	for i := range many {
		many[i] = strings.Repeat("T", 60) + string(rune('A'+i%26)) + string(rune('A'+i/26))
	}
	if _, err := k.IssueToken(claims(func(c *Claims) { c.Terminals = many })); err == nil {
		t.Error("oversized token issued")
	}
}
