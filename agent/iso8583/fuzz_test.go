package iso8583

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// corpusFrames are the seeds: every sample message packed, and some broken frames.
func corpusFrames(t testing.TB) [][]byte {
	var out [][]byte
	for _, s := range samples() {
		m := s.m
		var macf MACFunc
		if s.withMAC {
			macf = macECB
		}
		out = append(out, mustPack(t, testHeader(t, false), &m, macf))
	}
	p := out[2] // purchase 0200
	out = append(out,
		p[:len(p)/2],
		frameOf(body("0200", []int{1}, "")),
		frameOf(body("0200", []int{5}, "000000000000")),
		frameOf(body("0200", []int{2}, "99 1234")),
		frameOf(body("0200", []int{35}, "04 12E4")),
		frameOf(body("0200", []int{60}, "0005 220000")),
		frameOf(body("0200", []int{64}, "")),
		[]byte{0xFF, 0xFF},
	)
	return out
}

// FuzzUnpack: Unpack never panics, fails only with ErrMalformed, and whatever it accepts packs
// back (field 64 carried as is) to the same bytes, which unpack to the same header, message
// and MAC block.
func FuzzUnpack(f *testing.F) {
	for _, fr := range corpusFrames(f) {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, m, mab, err := Unpack(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		again, err := Pack(h, m, nil)
		if err != nil {
			t.Fatalf("accepted message does not pack: %v", err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("accepted frame does not rebuild byte for byte:\n%X\n%X", frame, again)
		}
		h2, m2, mab2, err := Unpack(again)
		if err != nil {
			t.Fatalf("repacked frame does not unpack: %v", err)
		}
		if h2 != h || !reflect.DeepEqual(m2, m) || !bytes.Equal(mab, mab2) || (mab == nil) != (mab2 == nil) {
			t.Fatalf("round trip differs:\n%+v\n%+v", m, m2)
		}
		if m.AddData != "" {
			_, _ = ParseTotals(m.AddData)
		}
	})
}

// FuzzReadFrame: ReadFrame returns a whole frame whose length prefix is right, or an error;
// it never reads past the frame.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range corpusFrames(f) {
		f.Add(fr)
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{0x10, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		fr, err := ReadFrame(r)
		if err != nil {
			if fr != nil {
				t.Fatal("frame with an error")
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrTooLong) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		n := int(fr[0])<<8 | int(fr[1])
		if n == 0 || n > MaxFrame || len(fr) != n+2 || !bytes.Equal(fr, in[:len(fr)]) || r.Len() != len(in)-len(fr) {
			t.Fatalf("frame of %d bytes, prefix %d", len(fr), n)
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpora under testdata/fuzz when ISO8583_WRITE_CORPUS
// is set (they are committed; run it after changing the samples).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ISO8583_WRITE_CORPUS") == "" {
		t.Skip("set ISO8583_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	for _, name := range []string{"FuzzUnpack", "FuzzReadFrame"} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, fr := range corpusFrames(t) {
			data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(fr)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
