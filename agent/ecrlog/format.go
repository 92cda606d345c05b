package ecrlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posagent/posagent/agent/logging"
)

// Bounds on what one line may hold. Together they keep a line far below logging.MaxLineLen
// (longer lines are skipped when read) and below one log.batch record (48 KiB).
const (
	// MaxResponse is the most of a response, and of a query, that is kept; longer ones are
	// cut and the line says how long they were ("responseTruncated", "queryTruncated").
	MaxResponse = 8 << 10
	maxPath     = 1 << 10
	maxShort    = 128       // remote, ECR name, method, process id
	maxKey      = 256       // a query or response key
	maxParse    = 256 << 10 // larger responses are not decoded, only cut as text
	maxDuration = 24 * time.Hour
)

// cut marks a shortened path or name.
const cut = "…"

// line is a log line without its "time", which the writer puts first.
type line struct {
	Start             string          `json:"start,omitempty"`
	Remote            string          `json:"remote,omitempty"`
	ECR               string          `json:"ecr,omitempty"`
	Method            string          `json:"method"`
	Path              string          `json:"path"`
	Query             json.RawMessage `json:"query,omitempty"`
	QueryTruncated    int             `json:"queryTruncated,omitempty"`
	HTTP              int             `json:"http"`
	Code              int             `json:"code"`
	DurationMs        float64         `json:"durationMs"`
	ProcessID         string          `json:"processId,omitempty"`
	Response          json.RawMessage `json:"response,omitempty"`
	ResponseTruncated int             `json:"responseTruncated,omitempty"`
}

// format renders e as a JSON object with every card number masked and every token (or other
// value under a key logging.SensitiveKey names) replaced by logging.Redacted.
func format(e Entry) ([]byte, error) {
	l := line{
		Remote:    text(e.Remote, maxShort),
		ECR:       text(e.ECR, maxShort),
		Method:    text(e.Method, maxShort),
		Path:      text(e.Path, maxPath),
		HTTP:      e.HTTP,
		Code:      e.Code,
		ProcessID: processIDText(e.ProcessID),
	}
	if !e.Time.IsZero() {
		l.Start = e.Time.UTC().Format(time.RFC3339Nano)
	}
	// Clamped: no exchange takes a day, and an absurd value must not print as a long digit run.
	d := min(max(e.Duration, 0), maxDuration)
	l.DurationMs = float64(d.Microseconds()) / 1000
	var err error
	if l.Query, l.QueryTruncated, err = query(e.Query); err != nil {
		return nil, err
	}
	if l.Response, l.ResponseTruncated, err = response(e.Response); err != nil {
		return nil, err
	}
	return encode(l)
}

// encode is json.Marshal without HTML escaping: "\u0026" followed by digits would put a digit
// run into the line that is not in the data.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// text cleans s, cut to limit bytes, for a line: masked and redacted (see clean).
func text(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit] + cut
	}
	return clean(s)
}

// processIDText keeps a process id as the terminal makes them — 13 digits of milliseconds
// from 1 — unmasked: about one in ten passes the Luhn check, and a log whose ids are masked
// cannot be matched with the cash register's. Anything else is cleaned like any text.
func processIDText(s string) string {
	if len(s) == 13 && s[0] == '1' && strings.Trim(s, "0123456789") == "" {
		return s
	}
	return text(s, maxShort)
}

// clean makes a string safe to log. Invalid UTF-8 and control characters are replaced, so
// that the JSON encoder never writes a \u escape (whose hex digits could join a digit run
// that follows); then token values written as text ("accessToken=…") are redacted and card
// numbers masked. Masking comes last, after everything that may change the string.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029':
			return '\uFFFD'
		}
		return r
	}, s)
	return logging.MaskPANs(redactTokenText(s))
}

// query renders q as a JSON object of value lists.
func query(q url.Values) (json.RawMessage, int, error) {
	if len(q) == 0 {
		return nil, 0, nil
	}
	out := make(map[string][]string, len(q))
	for _, k := range slices.Sorted(maps.Keys(q)) {
		ck := text(k, maxKey)
		secret := logging.SensitiveKey(k)
		for _, v := range q[k] {
			switch {
			case secret:
				v = logging.Redacted
			case k == "processId":
				v = processIDText(v)
			default:
				v = text(v, MaxResponse)
			}
			out[ck] = append(out[ck], v)
		}
	}
	raw, err := encode(out)
	if err != nil {
		return nil, 0, err
	}
	return bound(raw)
}

// response renders the envelope sent: decoded, redacted and encoded again when it is JSON,
// otherwise as cleaned text.
func response(resp []byte) (json.RawMessage, int, error) {
	if len(resp) == 0 {
		return nil, 0, nil
	}
	if len(resp) <= maxParse {
		if v, ok := decode(resp); ok {
			raw, err := encode(redactValue(v))
			if err != nil {
				return nil, 0, err
			}
			return bound(raw)
		}
	}
	s := clean(string(resp[:min(len(resp), maxParse)]))
	truncated := 0
	if len(s) > MaxResponse {
		s, truncated = logging.MaskPANs(cutUTF8(s, MaxResponse)), len(resp)
	}
	raw, err := encode(s)
	return raw, truncated, err
}

// cutUTF8 is s cut to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func decode(data []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return v, true
}

// redactValue walks a decoded JSON value: strings and keys cleaned, numbers that are card
// numbers masked (as strings), values under sensitive keys redacted. A true/false or null
// under such a key ("pinEntered") says nothing secret and is kept.
func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		// In key order, so that keys cleaned to the same text resolve the same way each time.
		for _, k := range slices.Sorted(maps.Keys(x)) {
			val := x[k]
			switch val.(type) {
			case bool, nil:
			default:
				if logging.SensitiveKey(k) {
					val = logging.Redacted
				} else if str, ok := val.(string); ok && k == "processId" {
					val = processIDText(str)
				} else {
					val = redactValue(val)
				}
			}
			out[text(k, maxKey)] = val
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	case string:
		return clean(x)
	case json.Number:
		if m := logging.MaskPANs(string(x)); m != string(x) {
			return m
		}
		return x
	}
	return v
}

// bound keeps raw when it fits in MaxResponse; otherwise its beginning, as a string, and its
// full length. The cut may leave a card number at the end of a longer digit run that was not
// one, so the kept part is masked again.
func bound(raw []byte) (json.RawMessage, int, error) {
	if len(raw) <= MaxResponse {
		return raw, 0, nil
	}
	s, err := encode(logging.MaskPANs(cutUTF8(string(raw), MaxResponse)))
	return s, len(raw), err
}

// redactTokenText replaces the value after any "…token" followed by ':' or '=' (query
// strings, headers, JSON that was not decoded): a cash register's access and refresh tokens
// must never be written, even in a malformed answer.
func redactTokenText(s string) string {
	const word = "token"
	var b strings.Builder
	last := 0
	for i := 0; i+len(word) <= len(s); {
		if !strings.EqualFold(s[i:i+len(word)], word) {
			i++
			continue
		}
		j := i + len(word)
		for j < len(s) && (s[j] == '"' || s[j] == '\'' || s[j] == ' ') {
			j++
		}
		if j >= len(s) || (s[j] != ':' && s[j] != '=') {
			i += len(word)
			continue
		}
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '"' || s[j] == '\'') {
			j++
		}
		k := j
		for k < len(s) && !strings.ContainsRune("\"'&,;}] ", rune(s[k])) {
			k++
		}
		if k > j {
			b.WriteString(s[last:j])
			b.WriteString(logging.Redacted)
			last = k
		}
		i = k
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
