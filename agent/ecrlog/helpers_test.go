package ecrlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Luhn-valid card numbers from test ranges.
const (
	pan16     = "6222021234561236"
	pan16Mask = "622202******1236"
	pan13     = "4111111111119"
	pan13Mask = "411111***1119"
	pan19     = "6222021234567890128"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTest(t testing.TB, maxSize int64, keep int, o Options) *Log {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := Open(filepath.Join(t.TempDir(), "ecr.log"), maxSize, keep, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rawLines reads every line of the log.
func rawLines(t testing.TB, l *Log, from, to time.Time) [][]byte {
	t.Helper()
	var out [][]byte
	if err := l.ReadRange(from, to, func(line []byte) error {
		out = append(out, bytes.Clone(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeLine(t testing.TB, line []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("line %q is not a JSON object: %v", line, err)
	}
	return m
}

// cardNumbers returns every maximal run of 13 to 19 digits in s that passes the Luhn check:
// the shape logging.MaskPANs masks, so none may survive into a line.
func cardNumbers(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		if s[i] < '0' || s[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n := j - i; n >= 13 && n <= 19 && luhnOK(s[i:j]) {
			out = append(out, s[i:j])
		}
		i = j
	}
	return out
}

func luhnOK(d string) bool {
	sum := 0
	for i := range len(d) {
		v := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// jsonTexts returns every string, key and number in a decoded JSON value.
func jsonTexts(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			out = jsonTexts(e, append(out, k))
		}
	case []any:
		for _, e := range x {
			out = jsonTexts(e, out)
		}
	case string:
		out = append(out, x)
	case json.Number:
		out = append(out, string(x))
	}
	return out
}
