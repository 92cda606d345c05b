package emv

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzParse: any bytes either fail with ErrMalformed or parse into objects that encode back to
// bytes parsing into the same objects; nothing panics or reads out of bounds.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x6F, 0x1A, 0x84, 0x0E, '1', 'P', 'A', 'Y', '.', 'S', 'Y', 'S', '.', 'D', 'D', 'F', '0', '1', 0xA5, 0x08, 0x88, 0x01, 0x01, 0x5F, 0x2D, 0x02, 'e', 'n'})
	f.Add([]byte{0x70, 0x81, 0x03, 0x5A, 0x01, 0x12, 0x00, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		again, err := Parse(Encode(objs...))
		if err != nil || len(again) != len(objs) {
			t.Fatalf("re-encoded objects do not parse: %v", err)
		}
		for i := range objs {
			if again[i].Tag != objs[i].Tag || !bytes.Equal(again[i].Value, objs[i].Value) {
				t.Fatalf("object %d changed", i)
			}
		}
		d := Data{}
		_ = d.Collect(b)
		_, _ = Find(b, TagTrack2Equivalent)
		_, _ = ParseDOL(b)
		_ = d.String()
	})
}

// FuzzTrack2: the tag 57 and character parsers accept only what re-encodes to itself.
func FuzzTrack2(f *testing.F) {
	f.Add([]byte{0x62, 0x28, 0x48, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x4D, 0x31, 0x12, 0x22, 0x00, 0x00, 0x01, 0x23, 0x00})
	f.Add([]byte("4761739001010010=29122011000099999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if t2, err := Track2FromBCD(b); err == nil {
			back, err := Track2FromBCD(t2.BCD())
			if err != nil || back != t2 {
				t.Fatalf("BCD round trip: %v", err)
			}
		} else if !errors.Is(err, ErrTrack2) {
			t.Fatalf("error not ErrTrack2: %v", err)
		}
		if t2, err := ParseTrack2(string(b)); err == nil {
			if back, err := ParseTrack2(t2.Data()); err != nil || back != t2 {
				t.Fatalf("data round trip: %v", err)
			}
			if len(t2.PAN()) > 10 && bytes.Contains([]byte(t2.String()), []byte(t2.PAN())) {
				t.Fatal("String shows the PAN")
			}
		}
	})
}

// cardScript answers each APDU with the next piece of the fuzzer's bytes: a length byte,
// then that many bytes.
type cardScript struct{ b []byte }

func (s *cardScript) Transmit(context.Context, []byte) ([]byte, error) {
	if len(s.b) == 0 {
		return nil, errors.New("card gone")
	}
	n := min(int(s.b[0]), len(s.b)-1)
	resp := s.b[1 : 1+n]
	s.b = s.b[1+n:]
	return resp, nil
}

// FuzzReadApplication: a hostile card cannot make the reader panic, loop or read out of
// bounds, over either interface, through GENERATE AC.
func FuzzReadApplication(f *testing.F) {
	pse := append([]byte{30}, Encode(TLV{TagFCI, Encode(TLV{TagDFName, []byte("1PAY.SYS.DDF01")}, TLV{TagFCIProprietary, Encode(TLV{TagSFI, []byte{1}})})})...)
	pse = append(pse, 0x90, 0x00)
	f.Add(append(pse, 2, 0x6A, 0x83, 2, 0x6A, 0x82), false)
	f.Add([]byte{2, 0x6A, 0x82}, true)
	f.Fuzz(func(t *testing.T, b []byte, contactless bool) {
		s := &cardScript{b: b}
		c, err := ReadApplication(context.Background(), s, Config{Contactless: contactless, AIDs: [][]byte{{0xA0, 0, 0, 3, 0x33}}}, Terminal{})
		if err != nil {
			return
		}
		if r, err := c.GenerateAC(context.Background(), c.Terminal()); err == nil && len(r.Field55) > maxField55 {
			t.Fatal("field 55 too long")
		}
	})
}
