package auth

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
)

// BenchmarkParseToken is the offline check of a technician token: base64url, COSE_Sign1 and
// claims decode, the canonical re-encoding, the Ed25519 signature, the policy checks.
// "ed25519-verify" is the signature check alone over the same signed bytes, the floor.
func BenchmarkParseToken(b *testing.B) {
	key := newSigner(b, "tms-1")
	keys := keysOf(b, key)
	p := DefaultPolicy()
	for _, n := range []int{1, 64} {
		c := claims(func(c *Claims) {
			c.Terminals = c.Terminals[:0]
			for i := range n {
				c.Terminals = append(c.Terminals, fmt.Sprintf("SN%06d", i))
			}
			c.Terminals[n-1] = testSerial
		})
		tok := key.token(b, c)
		b.Run(fmt.Sprintf("terminals-%d", n), func(b *testing.B) {
			for b.Loop() {
				got, err := ParseToken(tok, keys, t0, p, testSerial, testDevice)
				if err != nil {
					b.Fatal(err)
				}
				if got.ID != c.ID {
					b.Fatalf("claims %+v", got)
				}
			}
			b.ReportMetric(float64(len(tok)), "token-B")
		})
	}
	b.Run("ed25519-verify", func(b *testing.B) {
		msg := make([]byte, 200)
		sig := ed25519.Sign(key.priv, msg)
		for b.Loop() {
			if !ed25519.Verify(key.pub, msg, sig) {
				b.Fatal("signature refused")
			}
		}
	})
}

// benchStore is a Store on a temporary database at a fixed time (sessions never idle out).
// With realAudit the logins are recorded in a real audit.Log with its outbox, each entry
// fsynced as in the agent; otherwise in memory.
func benchStore(b *testing.B, realAudit bool) (*Store, signer) {
	b.Helper()
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	commit := store.NewCommitter(db)
	b.Cleanup(func() {
		commit.Close()
		_ = db.Close()
	})
	var aud Auditor = &recorder{}
	if realAudit {
		ob, err := outbox.Open(db, commit, outbox.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if aud, err = audit.Open(audit.Options{DB: db, Commit: commit, Outbox: ob}); err != nil {
			b.Fatal(err)
		}
	}
	key := newSigner(b, "tms-1")
	s, err := Open(Options{DB: db, Commit: commit, Keys: keysOf(b, key), IDs: []string{testSerial, testDevice},
		Audit: aud, Now: func() time.Time { return t0 }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return s, key
}

// BenchmarkLoginToken is a whole token sign-in: lock-out check, ParseToken, two random
// tokens, the session kept (the oldest evicted past 32), and the audit entry. "audit-memory"
// isolates the sign-in; "audit-log" records it in a real audit log, as the agent does.
func BenchmarkLoginToken(b *testing.B) {
	for _, real := range []bool{false, true} {
		name := "audit-memory"
		if real {
			name = "audit-log"
		}
		b.Run(name, func(b *testing.B) {
			s, key := benchStore(b, real)
			tok := key.token(b, claims())
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.LoginToken(ctx, tok, "192.0.2.7:5000"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSession is the lookup every API request makes (cookie → session, policy checks,
// LastSeen touched), with the Store full (32 sessions).
func BenchmarkSession(b *testing.B) {
	s, key := benchStore(b, false)
	tok := key.token(b, claims())
	var id string
	for range maxSessions {
		sess, err := s.LoginToken(context.Background(), tok, "192.0.2.7:5000")
		if err != nil {
			b.Fatal(err)
		}
		id = sess.ID
	}
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			sess, err := s.Session(id)
			if err != nil {
				b.Fatal(err)
			}
			if sess.Technician != "tech42" {
				b.Fatalf("session of %q", sess.Technician)
			}
		}
	})
	b.Run("unknown", func(b *testing.B) {
		const other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		for b.Loop() {
			if _, err := s.Session(other); err != ErrNoSession {
				b.Fatalf("got %v, want ErrNoSession", err)
			}
		}
	})
}
