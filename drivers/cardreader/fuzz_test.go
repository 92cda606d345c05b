package cardreader

import (
	"errors"
	"strings"
	"testing"

	"github.com/posagent/posagent/drivers/cardreader/wire"
)

// FuzzTracks: the track parsers take any bytes; what they accept has sentinel-free data and
// errors name a track without quoting it.
func FuzzTracks(f *testing.F) {
	f.Add(mustHex(f, rawTrack1), mustHex(f, rawTrack2), mustHex(f, docTrack2))
	f.Add([]byte{0x45}, []byte{0x0B, 0x1F, 0x04}, []byte(nil))
	f.Fuzz(func(t *testing.T, t1, t2, t3 []byte) {
		c, err := ParseSwipe(t1, t2, t3)
		if c == nil && err == nil {
			t.Fatal("no card and no error")
		}
		if err != nil {
			var te *TrackError
			if !errors.As(err, &te) && !errors.Is(err, ErrTrackMismatch) {
				t.Fatalf("untyped error %v", err)
			}
		}
		if c != nil {
			if strings.ContainsAny(c.Track2.Data(), ";?") || strings.ContainsAny(c.Track3.Data(), ";?") {
				t.Fatal("sentinel inside data")
			}
			if p := c.PAN(); len(p) > 10 && strings.Contains(c.String(), p) {
				t.Fatal("String shows the PAN")
			}
		}
	})
}

// FuzzEvent: any event frame decodes into an event or an error, never a panic.
func FuzzEvent(f *testing.F) {
	f.Add(byte(wire.EvtSwiped), append(append([]byte{0}, byte(len(mustHex(f, docTrack2)))), append(mustHex(f, docTrack2), 0)...))
	f.Add(byte(wire.EvtTapped), []byte{wire.IfContactless, 4, 1, 2, 3, 4})
	f.Add(byte(wire.EvtInserted), []byte{wire.IfContact})
	f.Fuzz(func(t *testing.T, typ byte, data []byte) {
		ev := decodeEvent(wire.Frame{Seq: 1, Type: typ, Data: data})
		if ev.Kind == CardSwiped && ev.Card == nil && ev.Err == nil {
			t.Fatal("swipe without card or error")
		}
	})
}
