package emv

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Track2 is track 2 data — read from the magnetic stripe or, as the track-2 equivalent
// (tag 57), from the chip: PAN, expiry, service code and discretionary data. The fields are
// reached through methods; String, Format and LogValue show the masked PAN and the service
// code only, so printing or logging a Track2 never leaks it.
type Track2 struct {
	pan, expiry, service, discretionary string
}

// ErrTrack2 is wrapped by every error about badly formed track 2 data. The messages never
// quote the data.
var ErrTrack2 = errors.New("emv: bad track 2 data")

// Track 2 is at most 37 characters between its sentinels (ISO/IEC 7813).
const maxTrack2 = 37

// ParseTrack2 parses the characters between the sentinels of track 2:
// PAN, separator ('=' on the stripe, 'D' in tag 57), YYMM, service code, discretionary data.
func ParseTrack2(s string) (Track2, error) {
	if len(s) > maxTrack2 {
		return Track2{}, fmt.Errorf("%w: %d characters, at most %d", ErrTrack2, len(s), maxTrack2)
	}
	sep := strings.IndexAny(s, "=D")
	if sep < 0 {
		return Track2{}, fmt.Errorf("%w: no field separator", ErrTrack2)
	}
	pan, rest := s[:sep], s[sep+1:]
	if len(pan) < 12 || len(pan) > 19 || !digits(pan) {
		return Track2{}, fmt.Errorf("%w: PAN is not 12 to 19 digits", ErrTrack2)
	}
	if len(rest) < 7 || !digits(rest[:7]) {
		return Track2{}, fmt.Errorf("%w: expiry and service code missing", ErrTrack2)
	}
	if !validYYMM(rest[:4]) {
		return Track2{}, fmt.Errorf("%w: expiry month out of range", ErrTrack2)
	}
	if !digits(rest[7:]) {
		return Track2{}, fmt.Errorf("%w: discretionary data not numeric", ErrTrack2)
	}
	return Track2{pan: pan, expiry: rest[:4], service: rest[4:7], discretionary: rest[7:]}, nil
}

// Track2FromBCD decodes tag 57: the same characters as nibbles, D as the separator, padded
// with a final F to a whole byte.
func Track2FromBCD(b []byte) (Track2, error) {
	if len(b) > (maxTrack2+1)/2 {
		return Track2{}, fmt.Errorf("%w: %d bytes", ErrTrack2, len(b))
	}
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, hexDigit[c>>4], hexDigit[c&0x0F])
	}
	if n := len(s); n > 0 && s[n-1] == 'F' {
		s = s[:n-1]
	}
	return ParseTrack2(string(s))
}

const hexDigit = "0123456789ABCDEF"

// BCD is the tag 57 coding of the track.
func (t Track2) BCD() []byte {
	s := t.pan + "D" + t.expiry + t.service + t.discretionary
	if len(s)%2 == 1 {
		s += "F"
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		out[i] = nibble(s[2*i])<<4 | nibble(s[2*i+1])
	}
	return out
}

func nibble(c byte) byte {
	if c >= 'A' {
		return c - 'A' + 10
	}
	return c - '0'
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validYYMM(s string) bool {
	m := (s[2]-'0')*10 + s[3] - '0'
	return m >= 1 && m <= 12
}

// IsZero reports whether the track is empty (none was read).
func (t Track2) IsZero() bool { return t.pan == "" }

// PAN is the primary account number, in full: for field 2 and the PIN block, never for logs.
func (t Track2) PAN() string { return t.pan }

// Expiry is the expiry date as YYMM (field 14).
func (t Track2) Expiry() string { return t.expiry }

// ServiceCode is the three-digit service code.
func (t Track2) ServiceCode() string { return t.service }

// Data is the track as the host wants it in field 35: PAN, '=', expiry, service code and
// discretionary data. Never log it.
func (t Track2) Data() string {
	if t.pan == "" {
		return ""
	}
	return t.pan + "=" + t.expiry + t.service + t.discretionary
}

// ChipCard reports whether the service code says the card has a chip (first digit 2 or 6):
// such a card swiped should be inserted instead, and read by stripe only as a fallback.
func (t Track2) ChipCard() bool {
	return t.service != "" && (t.service[0] == '2' || t.service[0] == '6')
}

// Expired reports whether the card's last valid month is before now's month.
func (t Track2) Expired(now time.Time) bool {
	if len(t.expiry) != 4 {
		return false
	}
	yy := int(t.expiry[0]-'0')*10 + int(t.expiry[1]-'0')
	mm := int(t.expiry[2]-'0')*10 + int(t.expiry[3]-'0')
	return now.Year() > 2000+yy || now.Year() == 2000+yy && int(now.Month()) > mm
}

// String shows the masked PAN and the service code.
func (t Track2) String() string {
	if t.pan == "" {
		return "track2{}"
	}
	return "track2{pan=" + MaskPAN(t.pan) + " sc=" + t.service + "}"
}

// GoString keeps %#v masked too.
func (t Track2) GoString() string { return t.String() }

// Format prints the masked form for every verb.
func (t Track2) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue implements slog.LogValuer.
func (t Track2) LogValue() slog.Value {
	if t.pan == "" {
		return slog.GroupValue()
	}
	return slog.GroupValue(slog.String("pan", MaskPAN(t.pan)), slog.String("service_code", t.service))
}

// MaskPAN keeps the first six and last four digits of a card number and stars the rest, the
// form receipts and logs may carry. Anything too short to mask that way is starred entirely.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// LuhnValid reports whether a card number's check digit is right.
func LuhnValid(pan string) bool {
	if len(pan) < 2 || !digits(pan) {
		return false
	}
	sum := 0
	for i := 0; i < len(pan); i++ {
		d := int(pan[len(pan)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}
