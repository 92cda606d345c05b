package tmsclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Limits on a JSON body, chosen so that whatever passes here also passes the agent's CBOR
// decoder: a body sits one level inside the command map, so it gets one level less than
// tmsproto's 16; element counts match tmsproto's 4096.
const (
	MaxJSONBodySize = 1 << 20
	maxBodyDepth    = 15
	maxBodyElements = 4096
)

// BodyError reports a JSON body that cannot become a command body. Path locates the problem
// ("$" is the top level, "$.a[2]" an element inside it).
type BodyError struct {
	Path string
	Err  error
}

func (e *BodyError) Error() string { return "tmsclient: body " + e.Path + ": " + e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

func bodyErr(path, format string, args ...any) *BodyError {
	return &BodyError{Path: path, Err: fmt.Errorf(format, args...)}
}

// JSONToCBORBody turns a JSON object into a deterministic CBOR map for a command body.
// Integers stay integers (int64, or uint64 above its range); other numbers become float64.
// Duplicate keys are refused rather than resolved, since encoding/json would silently keep
// the last one and a command would carry something its author did not see.
func JSONToCBORBody(data []byte) ([]byte, error) {
	if len(data) > MaxJSONBodySize {
		return nil, bodyErr("$", "%d bytes exceeds %d", len(data), MaxJSONBodySize)
	}
	p := jsonParser{dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	tok, err := p.token("$")
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, bodyErr("$", "must be a JSON object")
	}
	v, err := p.object("$", 1)
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bodyErr("$", "trailing data after the object")
	}
	out, err := tmsproto.Marshal(v)
	if err != nil {
		return nil, &BodyError{Path: "$", Err: err}
	}
	return out, nil
}

type jsonParser struct {
	dec *json.Decoder
}

func (p *jsonParser) token(path string) (json.Token, error) {
	tok, err := p.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, bodyErr(path, "unexpected end of input")
	}
	if err != nil {
		return nil, &BodyError{Path: path, Err: err}
	}
	return tok, nil
}

func (p *jsonParser) value(tok json.Token, path string, depth int) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxBodyDepth {
			return nil, bodyErr(path, "nested deeper than %d levels", maxBodyDepth)
		}
		switch t {
		case '{':
			return p.object(path, depth+1)
		case '[':
			return p.array(path, depth+1)
		}
		return nil, bodyErr(path, "unexpected %q", t)
	case json.Number:
		return number(t, path)
	case string, bool, nil:
		return t, nil
	}
	return nil, bodyErr(path, "unexpected token %v", tok)
}

func (p *jsonParser) object(path string, depth int) (map[string]any, error) {
	m := make(map[string]any)
	for {
		tok, err := p.token(path)
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return m, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, bodyErr(path, "object key is not a string")
		}
		kp := path + "." + key
		if _, dup := m[key]; dup {
			return nil, bodyErr(kp, "duplicate key")
		}
		if len(m) >= maxBodyElements {
			return nil, bodyErr(path, "more than %d members", maxBodyElements)
		}
		vt, err := p.token(kp)
		if err != nil {
			return nil, err
		}
		v, err := p.value(vt, kp, depth)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
}

func (p *jsonParser) array(path string, depth int) ([]any, error) {
	a := []any{}
	for {
		ep := path + "[" + strconv.Itoa(len(a)) + "]"
		tok, err := p.token(ep)
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && d == ']' {
			return a, nil
		}
		if len(a) >= maxBodyElements {
			return nil, bodyErr(path, "more than %d elements", maxBodyElements)
		}
		v, err := p.value(tok, ep, depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
}

// number keeps a number written without fraction or exponent as an integer, so an amount or
// a counter never turns into a float on the way to the terminal.
func number(n json.Number, path string) (any, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u, nil
		}
		return nil, bodyErr(path, "integer %s out of the 64-bit range", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, bodyErr(path, "number %s out of range", s)
	}
	return f, nil
}
