// Package auth is the technician authentication of the diagnostics port: technician tokens
// signed by the TMS (they work offline), the local administrator password, roles, the
// security policy from the terminal configuration, sessions, CSRF tokens, and the lock-out
// after repeated failures, which survives a reboot.
package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Role is what a signed-in technician may do: reading is allowed to every role, actions per
// the policy's permission table.
type Role string

// Roles.
const (
	RoleReadOnly Role = termconfig.DiagRoleReadOnly
	RoleService  Role = termconfig.DiagRoleService
)

// Known reports whether r is one of the roles.
func (r Role) Known() bool { return r == RoleReadOnly || r == RoleService }

// TokenPrefix starts the text form of a technician token; the version in it lets a later form
// be told apart before anything is decoded.
const TokenPrefix = "pat1."

// MaxTokenSize bounds a token's text, checked before anything is decoded.
const MaxTokenSize = 4 << 10

// ClockSkew is how far in the future a token's issue time may be: terminals in the field
// often have a clock a little off.
const ClockSkew = 5 * time.Minute

// Token refusals; ParseToken's errors wrap exactly one of them.
var (
	ErrTokenMalformed     = errors.New("auth: technician token malformed")
	ErrTokenSignature     = errors.New("auth: technician token not signed by a trusted key")
	ErrTokenExpired       = errors.New("auth: technician token expired")
	ErrTokenNotYet        = errors.New("auth: technician token not valid yet")
	ErrTokenTooLong       = errors.New("auth: technician token lifetime exceeds the policy")
	ErrTokenWrongTerminal = errors.New("auth: technician token not issued for this terminal")
	ErrTokenRevoked       = errors.New("auth: technician token revoked")
	ErrTokenRole          = errors.New("auth: technician token has an unknown role")
)

// Claims are the payload of a technician token (deterministic CBOR).
type Claims struct {
	ID         string   `cbor:"jti"`            // unique, for revocation and audit
	Technician string   `cbor:"sub"`            // technician id
	Name       string   `cbor:"name,omitempty"` // shown in the console
	Role       Role     `cbor:"role"`
	Terminals  []string `cbor:"terms"` // serials or device ids; "*" suffix = prefix match; ["*"] = any
	IssuedAt   int64    `cbor:"iat"`   // unix s
	Expires    int64    `cbor:"exp"`   // unix s
}

// Limits of the claims.
const (
	maxTerminals = 64
	maxNameRunes = 64
)

var (
	technicianRe = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)
	terminalRe   = regexp.MustCompile(`^[A-Za-z0-9._:-]{0,64}\*?$`)
)

// check is the form of the claims, independent of time and policy. An unknown role is
// ErrTokenRole; every other problem ErrTokenMalformed.
func (c *Claims) check() error {
	switch {
	case !termconfig.ValidTokenID(c.ID):
		return fmt.Errorf("%w: id must be 1..64 of [A-Za-z0-9._:-]", ErrTokenMalformed)
	case !technicianRe.MatchString(c.Technician):
		return fmt.Errorf("%w: technician must be 1..64 of [A-Za-z0-9._@+-]", ErrTokenMalformed)
	case !utf8.ValidString(c.Name) || strings.ContainsFunc(c.Name, unicode.IsControl) ||
		utf8.RuneCountInString(c.Name) > maxNameRunes:
		return fmt.Errorf("%w: name must be at most %d printable characters", ErrTokenMalformed, maxNameRunes)
	case len(c.Terminals) == 0 || len(c.Terminals) > maxTerminals:
		return fmt.Errorf("%w: 1..%d terminals, got %d", ErrTokenMalformed, maxTerminals, len(c.Terminals))
	case c.IssuedAt <= 0 || c.Expires <= c.IssuedAt:
		return fmt.Errorf("%w: exp must be after iat, both positive", ErrTokenMalformed)
	}
	for _, t := range c.Terminals {
		if t == "" || !terminalRe.MatchString(t) {
			return fmt.Errorf("%w: terminal %q: want a serial or device id, a prefix ending in *, or *",
				ErrTokenMalformed, clip(t))
		}
	}
	if !c.Role.Known() {
		return fmt.Errorf("%w: %q", ErrTokenRole, clip(string(c.Role)))
	}
	return nil
}

// Matches reports whether the token is for one of ids (this terminal's serial and device id).
func (c *Claims) Matches(ids ...string) bool {
	for _, pat := range c.Terminals {
		prefix, wild := strings.CutSuffix(pat, "*")
		for _, id := range ids {
			if id == "" {
				continue
			}
			if (wild && strings.HasPrefix(id, prefix)) || (!wild && id == pat) {
				return true
			}
		}
	}
	return false
}

// IssueToken signs c with a TMS command key, naming kid, and returns the token's text.
func IssueToken(key ed25519.PrivateKey, kid string, c Claims) (string, error) {
	if kid == "" {
		return "", errors.New("auth: empty key id")
	}
	if len(key) != ed25519.PrivateKeySize {
		return "", errors.New("auth: not an Ed25519 private key")
	}
	if err := c.check(); err != nil {
		return "", err
	}
	payload, err := tmsproto.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("auth: encode claims: %w", err)
	}
	raw, err := tmsproto.Sign1(key, kid, payload)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	text := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	if len(text) > MaxTokenSize {
		return "", fmt.Errorf("auth: token of %d bytes exceeds %d (too many terminals?)", len(text), MaxTokenSize)
	}
	return text, nil
}

// decodeToken takes a token's text apart without checking the signature.
func decodeToken(text string) (*tmsproto.Signed1, Claims, error) {
	if len(text) > MaxTokenSize {
		return nil, Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxTokenSize)
	}
	// Pasted or scanned tokens often carry a line break or spaces around them.
	text = strings.TrimSpace(text)
	body, ok := strings.CutPrefix(text, TokenPrefix)
	if !ok {
		return nil, Claims{}, fmt.Errorf("%w: does not start with %q", ErrTokenMalformed, TokenPrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, Claims{}, fmt.Errorf("%w: not base64url", ErrTokenMalformed)
	}
	s, err := tmsproto.OpenSign1(raw)
	if err != nil {
		return nil, Claims{}, fmt.Errorf("%w: %w", ErrTokenMalformed, err)
	}
	var c Claims
	if err := tmsproto.Unmarshal(s.Payload, &c); err != nil {
		return nil, Claims{}, fmt.Errorf("%w: claims: %w", ErrTokenMalformed, err)
	}
	// Exactly the deterministic encoding of every field: refuses missing fields and other
	// spellings of the same values, so one token has one form.
	if canon, err := tmsproto.Marshal(c); err != nil || !bytes.Equal(canon, s.Payload) {
		return nil, Claims{}, fmt.Errorf("%w: claims are not the deterministic encoding of every field", ErrTokenMalformed)
	}
	return s, c, nil
}

// ParseToken checks a technician token: its form, its signature by one of keys (the TMS
// command keys), its role, revocation by p, its validity at now (issue time at most ClockSkew
// ahead), its lifetime against p.TokenMaxTTL, and that it names one of ids (this terminal's
// serial and device id). Errors wrap one of the ErrToken* errors and never quote the token.
// When the signature verified but a later check failed, the claims are returned with the error
// so the refusal can be audited with the technician's name.
func ParseToken(text string, keys tmsproto.Sign1Keys, now time.Time, p Policy, ids ...string) (Claims, error) {
	s, c, err := decodeToken(text)
	if err != nil {
		return Claims{}, err
	}
	if err := s.Verify(keys); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenSignature, err)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	p = p.withDefaults()
	t := now.Unix()
	switch {
	case p.Revoked[c.ID]:
		return c, fmt.Errorf("%w: token %s", ErrTokenRevoked, c.ID)
	case t >= c.Expires:
		return c, fmt.Errorf("%w at %s", ErrTokenExpired, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	case c.IssuedAt > now.Add(ClockSkew).Unix():
		return c, fmt.Errorf("%w: issued at %s", ErrTokenNotYet, time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	case time.Duration(c.Expires-c.IssuedAt)*time.Second > p.TokenMaxTTL:
		return c, fmt.Errorf("%w: %s, at most %s", ErrTokenTooLong,
			time.Duration(c.Expires-c.IssuedAt)*time.Second, p.TokenMaxTTL)
	case !c.Matches(ids...):
		return c, ErrTokenWrongTerminal
	}
	return c, nil
}

// clip keeps an attacker's value from filling an error or log line.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// hasAll reports whether a permission list allows everything.
func hasAll(actions []string) bool { return slices.Contains(actions, termconfig.DiagAllActions) }
