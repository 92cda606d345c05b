package cardreader

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Raw tracks as the reader sends them, computed with an independent implementation of ISO/IEC
// 7811 parity and LRC (the example of docs/cardreader-protocol.md is the third).
var (
	rawTrack2 = "0B040716010713191010011001101001100D02190102021001011010101019191919191F02"
	rawTrack1 = "4562545716515713191010511051101051103E23613264682F2C6425324F762973613E52195152521051511010101019191919191F6D"
	docTrack2 = "0B 16 02 15 10 19 04 07 10 10 10 10 10 10 10 01 04 0D 13 10 10 16 02 10 01 1F 01"
)

func TestTracksParse(t *testing.T) {
	t2, err := ParseTrack2(mustHex(t, rawTrack2))
	if err != nil {
		t.Fatal(err)
	}
	if t2.PAN() != "4761739001010010" || t2.Expiry() != "2912" || t2.ServiceCode() != "201" || t2.Data() != "4761739001010010=29122011000099999" {
		t.Errorf("track 2: %v", t2)
	}
	t1, err := ParseTrack1(mustHex(t, rawTrack1))
	if err != nil {
		t.Fatal(err)
	}
	if t1.PAN() != "4761739001010010" || t1.Name() != "CARDHOLDER/VISA" || t1.Expiry() != "2912" || t1.ServiceCode() != "201" {
		t.Errorf("track 1: %q %q %q", t1.Name(), t1.Expiry(), t1.ServiceCode())
	}
	doc, err := ParseTrack2(mustHex(t, docTrack2))
	if err != nil || doc.Data() != "6250947000000014=3006201" {
		t.Errorf("documented example: %v", err)
	}
	c, err := ParseSwipe(mustHex(t, rawTrack1), mustHex(t, rawTrack2), nil)
	if err != nil || c.PAN() != "4761739001010010" || !c.ChipCard() || !c.Track3.IsZero() {
		t.Errorf("swipe: %v %v", c, err)
	}
}

func TestBadTracksGiveClearErrors(t *testing.T) {
	good := mustHex(t, rawTrack2)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, tc := range map[string]struct {
		raw  []byte
		want error
	}{
		"empty": {nil, ErrNoData},
		"bad LRC": {mod(func(b []byte) []byte {
			b[len(b)-1] ^= 0x03 // two data bits: parity still odd, LRC wrong
			return b
		}), ErrLRC},
		"parity":            {mod(func(b []byte) []byte { b[3] ^= 0x10; return b }), ErrParity},
		"out of range":      {mod(func(b []byte) []byte { b[3] |= 0x40; return b }), ErrParity},
		"no start sentinel": {mod(func(b []byte) []byte { return b[1:] }), ErrSentinel},
		"no end sentinel": {mod(func(b []byte) []byte {
			return append(b[:len(b)-2:len(b)-2], 0x10)
		}), ErrSentinel},
		"no LRC":          {mod(func(b []byte) []byte { return b[:len(b)-1] }), ErrLRC},
		"after LRC":       {mod(func(b []byte) []byte { return append(b, 0x10) }), ErrTrackFormat},
		"too long":        {append(good[:1:1], make([]byte, 60)...), ErrTrackFormat},
		"control in data": {mustHex(t, "0B 1A 1F 0E"), ErrTrackFormat}, // ;:? and its LRC
	} {
		_, err := ParseTrack2(tc.raw)
		var te *TrackError
		if !errors.Is(err, tc.want) || !errors.As(err, &te) || te.Track != 2 {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "4761739001") {
			t.Errorf("%s: error quotes the PAN: %v", name, err)
		}
	}
}

func TestSwipeParsing(t *testing.T) {
	t1, t2 := mustHex(t, rawTrack1), mustHex(t, rawTrack2)
	badLRC := append([]byte(nil), t2...)
	badLRC[len(badLRC)-1] ^= 0x03
	// Track 2 bad, track 1 good: the card comes from track 1 and the error names track 2.
	c, err := ParseSwipe(t1, badLRC, nil)
	if c == nil || c.PAN() != "4761739001010010" || !errors.Is(err, ErrLRC) {
		t.Errorf("track 1 only: %v %v", c, err)
	}
	// Nothing usable.
	if c, err := ParseSwipe(nil, badLRC, nil); c != nil || !errors.Is(err, ErrLRC) {
		t.Errorf("nothing: %v %v", c, err)
	}
	if c, err := ParseSwipe(nil, nil, nil); c != nil || !errors.Is(err, ErrNoData) {
		t.Errorf("blank: %v %v", c, err)
	}
}

func TestCardNeverPrintsTrackData(t *testing.T) {
	c, err := ParseSwipe(mustHex(t, rawTrack1), mustHex(t, rawTrack2), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("%v %+v %#v %s %d %x %q", c, c, c, c, c, *c, c.Track1)
	for _, secret := range []string{"4761739001010010", "29122011000099999", "CARDHOLDER", "2912"} {
		if strings.Contains(out, secret) {
			t.Errorf("printed card contains %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "476173******0010") {
		t.Errorf("masked PAN missing: %s", out)
	}
}
