package cardreader

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/posagent/posagent/drivers/emv"
)

// Card is what a swipe read: the tracks that passed their checks. Track 2 is what the host
// wants (field 35, and field 2 from its PAN); track 3 goes to field 36 when present. String,
// Format and LogValue show the masked PAN and the service code, never track data.
type Card struct {
	Track1 Track1     // zero when not read
	Track2 emv.Track2 // zero when not read
	Track3 Track3     // zero when not read
}

// ErrTrackMismatch: tracks 1 and 2 carry different card numbers (a forged or mis-encoded card).
var ErrTrackMismatch = errors.New("cardreader: tracks 1 and 2 disagree on the PAN")

// ParseSwipe checks and parses the raw tracks of a swipe (an empty slice is a track the card
// does not have). It returns the card when track 1 or 2 is usable, with an error joining the
// failures of the other tracks, if any; a nil card when nothing is usable.
func ParseSwipe(raw1, raw2, raw3 []byte) (*Card, error) {
	var c Card
	var errs []error
	if len(raw1) > 0 {
		t, err := ParseTrack1(raw1)
		c.Track1 = t
		errs = append(errs, err)
	}
	if len(raw2) > 0 {
		t, err := ParseTrack2(raw2)
		c.Track2 = t
		errs = append(errs, err)
	}
	if len(raw3) > 0 {
		t, err := ParseTrack3(raw3)
		c.Track3 = t
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if c.Track1.IsZero() && c.Track2.IsZero() {
		if err == nil {
			err = &TrackError{Track: 2, Err: ErrNoData}
		}
		return nil, err
	}
	if !c.Track1.IsZero() && !c.Track2.IsZero() && c.Track1.PAN() != c.Track2.PAN() {
		return nil, ErrTrackMismatch
	}
	return &c, err
}

// PAN is the card number, from track 2 or else track 1. Never log it: use MaskedPAN.
func (c *Card) PAN() string {
	if !c.Track2.IsZero() {
		return c.Track2.PAN()
	}
	return c.Track1.PAN()
}

// MaskedPAN is the PAN with all but the first six and last four digits starred.
func (c *Card) MaskedPAN() string { return emv.MaskPAN(c.PAN()) }

// Expiry is YYMM.
func (c *Card) Expiry() string {
	if !c.Track2.IsZero() {
		return c.Track2.Expiry()
	}
	return c.Track1.Expiry()
}

// ServiceCode is the three-digit service code.
func (c *Card) ServiceCode() string {
	if !c.Track2.IsZero() {
		return c.Track2.ServiceCode()
	}
	return c.Track1.ServiceCode()
}

// ChipCard is the fallback indication: the service code says the card has a chip (first
// digit 2 or 6). The terminal should ask for the card to be inserted, and accept the swipe
// only as a fallback after the chip failed (POS entry mode then says so).
func (c *Card) ChipCard() bool {
	sc := c.ServiceCode()
	return sc != "" && (sc[0] == '2' || sc[0] == '6')
}

func (c *Card) String() string {
	if c == nil {
		return "card(nil)"
	}
	return fmt.Sprintf("card{pan=%s sc=%s tracks=%s}", c.MaskedPAN(), c.ServiceCode(), c.tracks())
}

func (c *Card) tracks() string {
	s := ""
	for i, ok := range []bool{!c.Track1.IsZero(), !c.Track2.IsZero(), !c.Track3.IsZero()} {
		if ok {
			s += fmt.Sprint(i + 1)
		}
	}
	if s == "" {
		return "-"
	}
	return s
}

// GoString keeps %#v masked.
func (c *Card) GoString() string { return c.String() }

// Format prints the masked form for every verb.
func (c *Card) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer.
func (c *Card) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("none")
	}
	return slog.GroupValue(
		slog.String("pan", c.MaskedPAN()),
		slog.String("service_code", c.ServiceCode()),
		slog.String("tracks", c.tracks()),
		slog.Bool("chip", c.ChipCard()),
	)
}
