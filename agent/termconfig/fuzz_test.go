package termconfig

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to Decode and Validate: neither may panic, errors must be
// the typed ones, and whatever decodes must survive an encode/decode round trip unchanged, so
// the store's "same content" comparison means what it says.
func FuzzDecode(f *testing.F) {
	for _, d := range []*Document{Default(), example(f), docFor(f, 7)} {
		enc := mustEncode(f, d)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xbf, 0xff})
	f.Add([]byte{0x9f, 0xff})
	f.Add([]byte{0xd9, 0xd9, 0xf7, 0xa0})

	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Decode(body)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error is %T, want *DecodeError: %v", err, err)
			}
			return
		}
		verr := d.Validate()
		if verr != nil {
			var ve *ValidationError
			if !errors.As(verr, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("Validate error is %T with no violations: %v", verr, verr)
			}
		}
		enc, err := Encode(d)
		if err != nil {
			t.Fatalf("Encode of a decoded document: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		enc2, err := Encode(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encode/decode round trip changed the document")
		}
		if (again.Validate() == nil) != (verr == nil) {
			t.Fatal("validity changed across a round trip")
		}
	})
}
