package tmsclient

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestJSONToCBORBody(t *testing.T) {
	for _, tc := range []struct {
		json string
		want map[string]any // as tmsproto decodes it back
	}{
		{`{}`, map[string]any{}},
		{`{"n": 42, "neg": -7, "big": 18446744073709551615, "zero": -0}`,
			map[string]any{"n": uint64(42), "neg": int64(-7), "big": uint64(math.MaxUint64), "zero": uint64(0)}},
		{`{"f": 1.5, "e": 1e3, "s": "x<&>", "t": true, "nil": null}`,
			map[string]any{"f": 1.5, "e": 1000.0, "s": "x<&>", "t": true, "nil": nil}},
		{`{"a": [1, "two", [3], {"four": 4}], "o": {"p": {"q": []}}}`,
			map[string]any{"a": []any{uint64(1), "two", []any{uint64(3)}, map[string]any{"four": uint64(4)}},
				"o": map[string]any{"p": map[string]any{"q": []any{}}}}},
	} {
		out, err := JSONToCBORBody([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		var got map[string]any
		if err := tmsproto.Unmarshal(out, &got); err != nil {
			t.Errorf("%s: decode: %v", tc.json, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.json, got, tc.want)
		}
	}
}

func TestJSONToCBORBodyIsDeterministic(t *testing.T) {
	a, err := JSONToCBORBody([]byte(`{"b": 1, "a": {"y": 2, "x": [1.5]}, "aa": "s"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := JSONToCBORBody([]byte(`{ "aa":"s", "a":{"x":[1.5],"y":2}, "b":1 }`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("key order changed the encoding:\n%s\n%s", hex.EncodeToString(a), hex.EncodeToString(b))
	}
	// Core deterministic encoding: shorter keys first, then bytewise; 1.5 as a half float.
	if got, want := hex.EncodeToString(a), "a36161a2617881f93e006179026162016261616173"; got != want {
		t.Errorf("encoding %s, want %s", got, want)
	}
}

func TestJSONToCBORBodyRejects(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 16) + "1" + strings.Repeat("}", 16)
	okDeep := strings.Repeat(`{"a":`, 15) + "1" + strings.Repeat("}", 15)
	body, err := JSONToCBORBody([]byte(okDeep))
	if err != nil {
		t.Fatalf("15 nested levels: %v", err)
	}
	// The deepest accepted body still passes the agent's verifier inside a command.
	key := newTestKey(t, "k")
	raw, err := tmsproto.SignCommand(key.Key, key.ID, tmsproto.Command{ID: "1", Seq: 1, Kind: "k", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{"k": key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(raw); err != nil {
		t.Errorf("agent refuses the deepest body: %v", err)
	}
	for name, in := range map[string]string{
		"empty":          ``,
		"array":          `[1]`,
		"string":         `"x"`,
		"null":           `null`,
		"trailing":       `{} {}`,
		"trailing junk":  `{}x`,
		"unterminated":   `{"a": 1`,
		"duplicate key":  `{"a": 1, "a": 2}`,
		"nested dup":     `{"o": {"k": 1, "k": 1}}`,
		"too deep":       deep,
		"int too big":    `{"n": 18446744073709551616}`,
		"int too small":  `{"n": -9223372036854775809}`,
		"float overflow": `{"f": 1e999}`,
		"syntax":         `{"a" 1}`,
		"many members":   "{" + manyMembers(4097) + "}",
		"many elements":  `{"a": [` + strings.TrimSuffix(strings.Repeat("0,", 4097), ",") + `]}`,
		"oversized":      `{"a": "` + strings.Repeat("x", MaxJSONBodySize) + `"}`,
	} {
		_, err := JSONToCBORBody([]byte(in))
		var be *BodyError
		if !errors.As(err, &be) {
			t.Errorf("%s: %v, want a BodyError", name, err)
		}
	}
	_, err = JSONToCBORBody([]byte(`{"o": {"list": [1, {"k": 1, "k": 2}]}}`))
	var be *BodyError
	if !errors.As(err, &be) || be.Path != "$.o.list[1].k" {
		t.Errorf("error path: %v", err)
	}
}

func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(hex.EncodeToString([]byte{byte(i >> 8), byte(i)}))
		b.WriteString(`":1`)
	}
	return b.String()
}

// FuzzJSONToCBORBody: no input panics; whatever is accepted is a CBOR map the agent's strict
// decoder takes, and encoding it again gives the same bytes.
func FuzzJSONToCBORBody(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":-1,"b":1.25,"c":"x","d":[true,false,null],"e":{"f":{}}}`,
		`{"big":18446744073709551615}`, `{"a":1,"a":2}`, `[]`, `{"a":"\u00e9\ud83d\ude00"}`,
		`{"a":1e400}`, `{"a":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}`, `{"x":0.1e-7}`, ` {"a" : 1 } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := JSONToCBORBody(data)
		if err != nil {
			var be *BodyError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a BodyError", err)
			}
			return
		}
		if out[0]>>5 != 5 {
			t.Fatalf("not a CBOR map: %x", out)
		}
		var m map[string]any
		if err := tmsproto.Unmarshal(out, &m); err != nil {
			t.Fatalf("agent decoder refuses %x: %v", out, err)
		}
		again, err := tmsproto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not deterministic: %x vs %x", out, again)
		}
	})
}

func BenchmarkJSONToCBORBody(b *testing.B) {
	in := []byte(`{"apps":[{"pkg":"com.example.pay","version":1234,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],"force":false,"window":{"from":"02:00","to":"04:00"},"ratio":0.25}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := JSONToCBORBody(in); err != nil {
			b.Fatal(err)
		}
	}
}
