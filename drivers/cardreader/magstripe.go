package cardreader

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posagent/posagent/drivers/emv"
)

// Errors of a track that does not read. They come wrapped in a *TrackError naming the track;
// no message ever quotes track data.
var (
	ErrNoData      = errors.New("track empty")
	ErrParity      = errors.New("character parity error")
	ErrSentinel    = errors.New("start or end sentinel missing")
	ErrLRC         = errors.New("LRC mismatch")
	ErrTrackFormat = errors.New("track format wrong")
)

// TrackError says which track failed and why.
type TrackError struct {
	Track int
	Err   error
}

func (e *TrackError) Error() string { return fmt.Sprintf("cardreader: track %d: %v", e.Track, e.Err) }
func (e *TrackError) Unwrap() error { return e.Err }

// trackSet is how a track codes its characters on the stripe (ISO/IEC 7811-2, 7811-6): bits
// data bits plus one odd parity bit per character, the character being the data plus base.
type trackSet struct {
	track    int
	bits     uint
	base     byte
	ss, es   byte
	maxChars int // with sentinels and LRC
}

var (
	set1 = trackSet{track: 1, bits: 6, base: 0x20, ss: '%', es: '?', maxChars: 79}
	set2 = trackSet{track: 2, bits: 4, base: 0x30, ss: ';', es: '?', maxChars: 40}
	set3 = trackSet{track: 3, bits: 4, base: 0x30, ss: ';', es: '?', maxChars: 107}
)

// decode checks a raw track — one byte per stripe character, data bits low, parity bit above
// them, as the reader sends it — and returns the characters between the sentinels: every
// character's odd parity, the start sentinel first, the end sentinel followed by exactly the
// LRC character, and the LRC, whose data bits make the count of ones in each bit position
// even over start sentinel … end sentinel + LRC (its own parity bit is its own odd parity).
func (s trackSet) decode(raw []byte) (string, error) {
	fail := func(err error, format string, a ...any) error {
		if format != "" {
			err = fmt.Errorf("%w: %s", err, fmt.Sprintf(format, a...))
		}
		return &TrackError{Track: s.track, Err: err}
	}
	if len(raw) == 0 {
		return "", fail(ErrNoData, "")
	}
	if len(raw) > s.maxChars {
		return "", fail(ErrTrackFormat, "%d characters, at most %d", len(raw), s.maxChars)
	}
	mask := byte(1)<<s.bits - 1
	chars := make([]byte, len(raw))
	for i, b := range raw {
		if b>>(s.bits+1) != 0 {
			return "", fail(ErrParity, "character %d out of range", i)
		}
		if !onesOdd(b) {
			return "", fail(ErrParity, "character %d", i)
		}
		chars[i] = b&mask + s.base
	}
	if chars[0] != s.ss {
		return "", fail(ErrSentinel, "no start sentinel")
	}
	es := strings.IndexByte(string(chars[1:]), s.es) + 1
	if es == 0 {
		return "", fail(ErrSentinel, "no end sentinel")
	}
	if es+1 >= len(chars) {
		return "", fail(ErrLRC, "LRC character missing")
	}
	if es+2 != len(chars) {
		return "", fail(ErrTrackFormat, "characters after the LRC")
	}
	var lrc byte
	for _, b := range raw[:es+1] {
		lrc ^= b & mask
	}
	if lrc != raw[es+1]&mask {
		return "", fail(ErrLRC, "")
	}
	data := chars[1:es]
	for i, c := range data {
		if !s.dataChar(c) {
			return "", fail(ErrTrackFormat, "control character at %d", i+1)
		}
	}
	return string(data), nil
}

// dataChar tells data characters from sentinels and the control characters of the set.
func (s trackSet) dataChar(c byte) bool {
	if c == s.ss || c == s.es {
		return false
	}
	if s.bits == 4 {
		// Numeric set: digits and the field separator; : < > are reserved for hardware.
		return c >= '0' && c <= '9' || c == '='
	}
	return true
}

func onesOdd(b byte) bool {
	b ^= b >> 4
	b ^= b >> 2
	b ^= b >> 1
	return b&1 == 1
}

// Track1 is the alphanumeric track (ISO/IEC 7813 format B): PAN, name, expiry, service code
// and discretionary data. String and LogValue show the masked PAN only.
type Track1 struct {
	pan, name, expiry, service, discretionary string
}

// ParseTrack1 checks a raw track 1 (parity, sentinels, LRC) and parses format B.
func ParseTrack1(raw []byte) (Track1, error) {
	s, err := set1.decode(raw)
	if err != nil {
		return Track1{}, err
	}
	bad := func(why string) (Track1, error) {
		return Track1{}, &TrackError{Track: 1, Err: fmt.Errorf("%w: %s", ErrTrackFormat, why)}
	}
	if len(s) == 0 || s[0] != 'B' {
		return bad("format code is not B")
	}
	f := strings.SplitN(s[1:], "^", 3)
	if len(f) != 3 {
		return bad("field separators missing")
	}
	pan, name, rest := f[0], f[1], f[2]
	if len(pan) < 12 || len(pan) > 19 || !digits(pan) {
		return bad("PAN is not 12 to 19 digits")
	}
	if len(name) < 2 || len(name) > 26 {
		return bad("name is not 2 to 26 characters")
	}
	if len(rest) < 7 || !digits(rest[:7]) {
		return bad("expiry and service code missing")
	}
	if m := (rest[2]-'0')*10 + rest[3] - '0'; m < 1 || m > 12 {
		return bad("expiry month out of range")
	}
	return Track1{pan: pan, name: strings.TrimRight(name, " "), expiry: rest[:4], service: rest[4:7], discretionary: rest[7:]}, nil
}

// ParseTrack2 checks a raw track 2 (parity, sentinels, LRC) and parses it.
func ParseTrack2(raw []byte) (emv.Track2, error) {
	s, err := set2.decode(raw)
	if err != nil {
		return emv.Track2{}, err
	}
	t, err := emv.ParseTrack2(s)
	if err != nil {
		return emv.Track2{}, &TrackError{Track: 2, Err: fmt.Errorf("%w: %w", ErrTrackFormat, err)}
	}
	return t, nil
}

// Track3 is the numeric track 3 (ISO 4909), kept as read for field 36. String and LogValue
// show its length only.
type Track3 struct{ data string }

// ParseTrack3 checks a raw track 3 (parity, sentinels, LRC).
func ParseTrack3(raw []byte) (Track3, error) {
	s, err := set3.decode(raw)
	if err != nil {
		return Track3{}, err
	}
	return Track3{data: s}, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// PAN is the account number in full. Never log it.
func (t Track1) PAN() string { return t.pan }

// Name is the cardholder name as printed on the stripe.
func (t Track1) Name() string { return t.name }

// Expiry is YYMM.
func (t Track1) Expiry() string { return t.expiry }

// ServiceCode is the three-digit service code.
func (t Track1) ServiceCode() string { return t.service }

// IsZero reports whether no track 1 was read.
func (t Track1) IsZero() bool { return t.pan == "" }

func (t Track1) String() string {
	if t.pan == "" {
		return "track1{}"
	}
	return "track1{pan=" + emv.MaskPAN(t.pan) + "}"
}

// GoString keeps %#v masked.
func (t Track1) GoString() string { return t.String() }

// Format prints the masked form for every verb.
func (t Track1) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue implements slog.LogValuer.
func (t Track1) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Data is the track as read, between the sentinels, for field 36. Never log it.
func (t Track3) Data() string { return t.data }

// IsZero reports whether no track 3 was read.
func (t Track3) IsZero() bool { return t.data == "" }

func (t Track3) String() string { return fmt.Sprintf("track3{%d chars}", len(t.data)) }

// GoString keeps %#v masked.
func (t Track3) GoString() string { return t.String() }

// Format prints the masked form for every verb.
func (t Track3) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue implements slog.LogValuer.
func (t Track3) LogValue() slog.Value { return slog.StringValue(t.String()) }
