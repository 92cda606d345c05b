package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// Redacted replaces the value of a sensitive attribute.
const Redacted = "[redacted]"

// NewRedactingHandler wraps next so that nothing it writes carries a clear PAN or a secret:
// card numbers in the message and in string-like values are masked to first 6 and last 4
// digits, and attributes whose key names a secret (pin, pinblock, key, track2, cvv,
// password, secret, token …) lose their value entirely. It is a safety net under the rule
// that code never logs such data, not a licence to do so.
func NewRedactingHandler(next slog.Handler) slog.Handler { return &redactHandler{next: next} }

type redactHandler struct {
	next slog.Handler
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, MaskPANs(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, nr)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	if SensitiveKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, MaskPANs(v.String()))
	case slog.KindInt64:
		if n := v.Int64(); n >= 1e12 || n <= -1e12 {
			return maskNumber(a.Key, v, strconv.FormatInt(n, 10))
		}
	case slog.KindUint64:
		if n := v.Uint64(); n >= 1e12 {
			return maskNumber(a.Key, v, strconv.FormatUint(n, 10))
		}
	case slog.KindGroup:
		members := v.Group()
		red := make([]slog.Attr, len(members))
		for i, m := range members {
			red[i] = redactAttr(m)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		// Structs, maps and errors are rendered by the handler where this layer cannot see
		// inside; render them here as text so the masking reaches every field.
		return slog.String(a.Key, MaskPANs(anyText(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// maskNumber keeps an integer as it is unless its digits are a card number.
func maskNumber(key string, v slog.Value, digits string) slog.Attr {
	if m := MaskPANs(digits); m != digits {
		return slog.String(key, m)
	}
	return slog.Attr{Key: key, Value: v}
}

func anyText(v any) string {
	switch x := v.(type) {
	case nil:
		return "<nil>"
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	case []byte:
		return string(x)
	default:
		return fmt.Sprintf("%+v", x)
	}
}

// secretWords are key words whose values are never logged; wordSuffixes also match at the end
// of a compound word ("masterkey", "authToken" splits anyway, "adminpassword").
var (
	secretWords = map[string]bool{
		"pin": true, "pinblock": true, "key": true, "track": true, "track1": true, "track2": true,
		"track3": true, "cvv": true, "cvv2": true, "cvc": true, "cvc2": true, "password": true,
		"passwd": true, "passphrase": true, "secret": true, "token": true,
	}
	secretSuffixes = []string{"pinblock", "key", "password", "secret", "token"}
	// A last word from this set describes the secret rather than holding it: "key_id",
	// "password_file", "key_kcv", "pin_pad".
	safeLastWords = map[string]bool{
		"id": true, "ids": true, "kid": true, "file": true, "path": true, "dir": true, "count": true,
		"len": true, "length": true, "kcv": true, "version": true, "name": true, "type": true,
		"kind": true, "slot": true, "index": true, "status": true, "state": true, "pad": true,
		"loaded": true, "present": true, "set": true, "algo": true, "algorithm": true, "usage": true,
	}
)

// SensitiveKey reports whether an attribute key names secret data. Keys are split into words
// at '_', '-', '.', spaces and camelCase boundaries and matched case-insensitively.
func SensitiveKey(key string) bool {
	words := splitWords(key)
	if len(words) == 0 {
		return false
	}
	if len(words) > 1 && safeLastWords[words[len(words)-1]] {
		return false
	}
	for _, w := range words {
		if secretWords[w] {
			return true
		}
		for _, s := range secretSuffixes {
			if strings.HasSuffix(w, s) {
				return true
			}
		}
	}
	return false
}

// KeyWords splits a key into lower-cased words, as SensitiveKey matches them; packages with
// wider rules of their own (the audit log) match on the same words.
func KeyWords(key string) []string { return splitWords(key) }

func splitWords(key string) []string {
	var words []string
	rs := []rune(key)
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			words = append(words, strings.ToLower(string(rs[start:end])))
		}
		start = -1
	}
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush(i)
			continue
		}
		if start >= 0 && unicode.IsUpper(r) {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			// "pinBlock" → pin|Block; "PINBlock" → PIN|Block; "PIN" stays whole.
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				flush(i)
			}
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(rs))
	return words
}

// MaskPANs masks every run of 13 to 19 digits that passes the Luhn check, keeping the first 6
// and last 4 digits ("6222021234561236" → "622202******1236"); digits that follow such a run
// after a track-2 separator ('=' or 'D') are masked entirely. Strings without such a run are
// returned unchanged without allocating.
func MaskPANs(s string) string {
	var b []byte // allocated on the first mask
	i := 0
	for i < len(s) {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if n := j - i; n >= 13 && n <= 19 && luhn(s[i:j]) {
			if b == nil {
				b = []byte(s)
			}
			for k := i + 6; k < j-4; k++ {
				b[k] = '*'
			}
			// Track 2 layout: PAN, separator '=' or 'D', then expiry, service code and
			// discretionary data, none of which may be logged.
			if j+1 < len(s) && (s[j] == '=' || s[j] == 'D') && isDigit(s[j+1]) {
				j++
				for j < len(s) && isDigit(s[j]) {
					b[j] = '*'
					j++
				}
			}
		}
		i = j
	}
	if b == nil {
		return s
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// luhn reports whether the digit string passes the Luhn (mod 10) check.
func luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
