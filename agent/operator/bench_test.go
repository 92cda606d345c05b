package operator

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
)

// BenchmarkSignOn is one successful sign-on at the default iteration count: the PBKDF2 check
// plus the session (no write: the failure count is already 0).
func BenchmarkSignOn(b *testing.B) {
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := Open(Options{DB: db, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(DefaultIterations()), "iterations")
	for b.Loop() {
		if _, err := s.SignOn(b.Context(), SupervisorCode, FactorySupervisorPassword); err != ErrMustChange {
			b.Fatal(err)
		}
	}
}

// BenchmarkPBKDF2Iteration is the cost of one iteration, the figure docs/operators.md
// extrapolates to the terminals.
func BenchmarkPBKDF2Iteration(b *testing.B) {
	salt := make([]byte, saltLen)
	const n = 10_000
	start := time.Now()
	for b.Loop() {
		if _, err := pbkdf2.Key(sha256.New, "246810", salt, n, keyLen); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*n), "ns/iteration")
}
