package termconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, d := range map[string]*Document{"factory": Default(), "example": example(t), "docFor(39)": docFor(t, 39)} {
		enc := mustEncode(t, d)
		got, err := Decode(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameDoc(t, got, d)
		if len(enc) > MaxDocumentSize {
			t.Errorf("%s: %d bytes does not fit a command", name, len(enc))
		}
	}
}

// tmsctl turns the operator's JSON into a generic CBOR map, with every zero value spelled out
// and in its own key order; the agent must read it as the same document.
func TestDecodeGenericMapFromJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		t.Fatal(err)
	}
	body, err := tmsproto.Marshal(integers(t, generic))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	sameDoc(t, got, example(t))
}

// integers replaces JSON numbers by integers, as a JSON-to-CBOR converter must: a CBOR float
// does not decode into an integer field.
func integers(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = integers(t, e)
		}
	case []any:
		for i, e := range v {
			v[i] = integers(t, e)
		}
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			t.Fatalf("number %s: %v", v, err)
		}
		return n
	}
	return v
}

func TestDecodeRejects(t *testing.T) {
	enc := func(v any) []byte {
		b, err := tmsproto.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := map[string][]byte{
		"empty input":      {},
		"not cbor":         []byte(`{"version":1}`),
		"array":            enc([]any{1}),
		"unknown field":    enc(map[string]any{"version": 1, "colour": "blue"}),
		"unknown nested":   enc(map[string]any{"authHost": map[string]any{"port": 1}}),
		"duplicate key":    {0xa2, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x02},
		"wrong type":       enc(map[string]any{"version": "one"}),
		"negative":         enc(map[string]any{"version": -1}),
		"float":            enc(map[string]any{"version": 1.0}),
		"overflow":         enc(map[string]any{"hostParameters": map[string]any{"resendCount": 300}}),
		"indefinite map":   {0xbf, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01, 0xff},
		"tagged":           {0xd9, 0xd9, 0xf7, 0xa0},
		"trailing data":    {0xa0, 0xa0},
		"truncated":        enc(map[string]any{"countryCode": "398"})[:5],
		"invalid utf-8":    {0xa1, 0x6b, 'c', 'o', 'u', 'n', 't', 'r', 'y', 'C', 'o', 'd', 'e', 0x63, '3', 0xff, '8'},
		"bytes for string": {0xa1, 0x6b, 'c', 'o', 'u', 'n', 't', 'r', 'y', 'C', 'o', 'd', 'e', 0x43, '3', '9', '8'},
		"oversized":        append(enc(map[string]any{"countryCode": strings.Repeat("9", MaxDocumentSize)}), 0),
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := Decode(body)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, %v; want *DecodeError", d, err)
			}
			t.Log(err)
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	good, err := os.ReadFile("testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeJSON(append(bytes.Clone(good), "\n\n"...)); err != nil {
		t.Fatalf("trailing white space: %v", err)
	}
	for name, data := range map[string][]byte{
		"unknown field": []byte(`{"version": 1, "colour": "blue"}`),
		"trailing data": append(bytes.Clone(good), `{}`...),
		"fraction":      []byte(`{"version": 1.5}`),
		"negative":      []byte(`{"version": -1}`),
		"not json":      []byte(`version = 1`),
		"oversized":     []byte(`{"countryCode": "` + strings.Repeat("9", MaxJSONSize) + `"}`),
	} {
		t.Run(name, func(t *testing.T) {
			var de *DecodeError
			if _, err := DecodeJSON(data); !errors.As(err, &de) {
				t.Fatalf("got %v, want *DecodeError", err)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	orig := example(t)
	clone := orig.Clone()
	sameDoc(t, clone, orig)
	checked := 0
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		switch a.Kind() {
		case reflect.Struct:
			for i := range a.NumField() {
				walk(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
			}
		case reflect.Slice:
			if a.Len() == 0 {
				t.Errorf("%s is empty in the example, so Clone is not checked for it", path)
				return
			}
			if a.Pointer() == b.Pointer() {
				t.Errorf("%s shares its backing array with the original", path)
			}
			checked++
		}
	}
	walk("Document", reflect.ValueOf(orig).Elem(), reflect.ValueOf(clone).Elem())
	if checked == 0 {
		t.Fatal("no slice checked")
	}
}

func TestDigestIsStable(t *testing.T) {
	a, b := Digest(mustEncode(t, example(t))), Digest(mustEncode(t, example(t).Clone()))
	if a != b || len(a) != 16 {
		t.Fatalf("digests %q and %q", a, b)
	}
	if c := Digest(mustEncode(t, docFor(t, 1))); c == a {
		t.Fatal("different documents share a digest")
	}
}

// An empty list and an absent one are the same configuration and must compare equal.
func TestEmptyListsEncodeLikeAbsent(t *testing.T) {
	d := Default()
	d.BINRanges = []BINRange{}
	d.AuthHost.Addresses = []string{}
	d.PrintProfile.HeaderLines = []string{}
	if !bytes.Equal(mustEncode(t, d), mustEncode(t, Default())) {
		t.Fatal("empty lists change the encoding")
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("factory document with empty lists: %v", err)
	}
}
