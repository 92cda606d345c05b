package audit

import (
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/logging"
)

// Redacted replaces the value of a field whose name looks like a secret (the logs' mark).
const Redacted = logging.Redacted

// droppedField counts the fields left out beyond MaxFields.
const droppedField = "fieldsDropped"

// extraSecretWords are words that name secrets in audit fields beyond the logging rules (which
// already cover pin, key, track, password, secret, token …).
var extraSecretWords = []string{"pan", "cookie", "csrf", "cvv", "pinblock", "passcode"}

// secretField reports whether a field name looks like it holds a secret. It is deliberately
// wider than the log redaction: an audit record lives for years on the TMS.
func secretField(name string) bool {
	if logging.SensitiveKey(name) {
		return true
	}
	for _, w := range logging.KeyWords(name) {
		if slices.Contains(extraSecretWords, w) {
			return true
		}
	}
	return false
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence, and replaces invalid
// UTF-8 so the record always encodes as text.
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// scalar turns a caller's field value into one of the types an entry holds (string, bool,
// int64, uint64, float64), masking card numbers in text. ok is false for a nil value.
func scalar(v any) (out any, ok bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case string:
		return text(x), true
	case bool:
		return x, true
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return uint64(x), true
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case float32:
		return finite(float64(x)), true
	case float64:
		return finite(x), true
	case time.Duration:
		return x.Milliseconds(), true
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true
	case []byte:
		return text(hex.EncodeToString(x)), true
	case error:
		return text(x.Error()), true
	case fmt.Stringer:
		return text(x.String()), true
	default:
		return text(fmt.Sprint(x)), true
	}
}

func text(s string) string { return clip(logging.MaskPANs(s), MaxStringLen) }

// finite keeps numbers JSON can carry.
func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f)
	}
	return f
}

// sanitize prepares an event's fields: secrets redacted, values made scalar and clipped, at
// most MaxFields kept (in name order, the last slot then saying how many were left out).
func sanitize(in map[string]any) map[string]any {
	if len(in) == 0 {
		return nil
	}
	names := make([]string, 0, len(in))
	for k := range in {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make(map[string]any, min(len(in), MaxFields))
	dropped := 0
	for _, k := range names {
		name := clip(k, MaxFieldKeyLen)
		if name == "" || name == droppedField {
			dropped++
			continue
		}
		if _, dup := out[name]; dup { // two names equal once clipped
			dropped++
			continue
		}
		if len(out) >= MaxFields-1 && len(names) > MaxFields {
			dropped++
			continue
		}
		if secretField(name) {
			out[name] = Redacted
			continue
		}
		v, ok := scalar(in[k])
		if !ok {
			continue
		}
		out[name] = v
	}
	if dropped > 0 {
		out[droppedField] = int64(dropped)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
