package operator

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"runtime"

	"golang.org/x/sys/cpu"
)

// Password hashing: PBKDF2-HMAC-SHA256 (RFC 8018), a 16-byte random salt per hash, a 32-byte
// derived key. The iteration count is stored with every hash, so raising the default later
// re-hashes each password at its owner's next successful sign-on.
const (
	hashAlg  = "pbkdf2-sha256"
	saltLen  = 16
	keyLen   = 32
	maxDigit = 12 // seed 004 §5.1: a password is 4 to 12 digits

	// IterationsFast is the default where SHA-256 runs in hardware or assembly: arm64 with the
	// ARMv8 SHA2 instructions (Cortex-A53/A55 terminals), amd64 (the simulator). About 25-45
	// ms per check on a 1.3 GHz Cortex-A53 (extrapolated, docs/operators.md); 7-8 ms on the
	// amd64 development machine.
	IterationsFast = 40_000
	// IterationsSlow is the default where Go computes SHA-256 in portable code: linux/arm
	// (GOARM=7) and arm64 cores without the SHA2 instructions. About 25-50 ms per check on a
	// 1.2 GHz Cortex-A7 (extrapolated, docs/operators.md).
	IterationsSlow = 8_000
	// MinIterations is the floor for Options.Iterations (tests use it to stay fast).
	MinIterations = 1_000
)

// DefaultIterations is the iteration count for new hashes on this machine: IterationsSlow
// where SHA-256 has no hardware or assembly support, IterationsFast elsewhere.
func DefaultIterations() int {
	switch runtime.GOARCH {
	case "arm":
		return IterationsSlow
	case "arm64":
		if !cpu.ARM64.HasSHA2 {
			return IterationsSlow
		}
	}
	return IterationsFast
}

// secret is a stored password hash. It never prints: String, GoString and the slog value
// are a fixed placeholder, so a record logged by mistake leaks nothing.
type secret struct {
	Alg  string `cbor:"alg"`
	Iter int    `cbor:"iter"`
	Salt []byte `cbor:"salt"`
	Key  []byte `cbor:"key"`
}

func (secret) String() string   { return "[secret]" }
func (secret) GoString() string { return "[secret]" }

// newSecret hashes password with a fresh salt.
func newSecret(password string, iter int) (secret, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return secret{}, fmt.Errorf("operator: salt: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, keyLen)
	if err != nil {
		return secret{}, fmt.Errorf("operator: hash: %w", err)
	}
	return secret{Alg: hashAlg, Iter: iter, Salt: salt, Key: key}, nil
}

// matches reports whether password is the one hashed, comparing in constant time. A hash of
// an unknown algorithm or shape never matches.
func (h secret) matches(password string) bool {
	if h.Alg != hashAlg || h.Iter < 1 || len(h.Salt) == 0 || len(h.Key) != keyLen {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, password, h.Salt, h.Iter, keyLen)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(key, h.Key) == 1
}

// checkPassword enforces the password rules: digits only, minLen to 12 of them, not one digit
// repeated and not a straight run up or down (1234, 98765). The error never quotes the
// password.
func checkPassword(p string, minLen int) error {
	if len(p) < minLen || len(p) > maxDigit {
		return fmt.Errorf("%w: %d to %d digits", ErrWeakPassword, minLen, maxDigit)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return fmt.Errorf("%w: digits only", ErrWeakPassword)
		}
	}
	same, up, down := true, true, true
	for i := 1; i < len(p); i++ {
		same = same && p[i] == p[0]
		up = up && p[i] == p[i-1]+1
		down = down && p[i] == p[i-1]-1
	}
	if same || up || down {
		return fmt.Errorf("%w: one digit repeated or a straight run", ErrWeakPassword)
	}
	return nil
}

// validCode reports whether code is an operator code: 2 or 3 digits (seed 004 §5.1 asks for
// at least two; field 63 of the host messages carries the operator number as n3).
func validCode(code string) bool {
	if len(code) < 2 || len(code) > 3 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// wireCode is the code as field 63 carries it (three digits, zero-padded): "01" and "001" are
// the same operator to the host, so the store refuses to hold both.
func wireCode(code string) string {
	for len(code) < 3 {
		code = "0" + code
	}
	return code
}
