package emv

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Data holds the primitive data objects read from a card, by tag. Values that identify the
// card or its holder are hidden when it is printed or logged.
type Data map[Tag][]byte

// sensitive tags are shown by their length only: the PAN, track images and the holder's name.
var sensitive = map[Tag]bool{
	TagTrack1Equivalent: true, TagTrack2Equivalent: true, TagPAN: true, TagCardholderName: true,
	TagTrack1Discretionary: true, TagTrack2Discretionary: true, TagTrack2Data: true,
	0x5F50: true, // issuer URL can carry the PAN on some cards
	0x9F0B: true, // cardholder name extended
}

// Sensitive reports whether the tag's value identifies the card or its holder.
func Sensitive(t Tag) bool { return sensitive[t] }

// Collect adds every primitive object of b, looking inside templates. A later value for the
// same tag replaces an earlier one, as the last read record wins.
func (d Data) Collect(b []byte) error { return d.collect(b, 0) }

func (d Data) collect(b []byte, depth int) error {
	if depth > maxDepth {
		return malformed(0, "templates nested deeper than %d", maxDepth)
	}
	objs, err := Parse(b)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.Tag.Constructed() {
			if err := d.collect(o.Value, depth+1); err != nil {
				return err
			}
			continue
		}
		d[o.Tag] = slices.Clone(o.Value)
	}
	return nil
}

// String lists the tags with their values in hex, sensitive values replaced by their length.
func (d Data) String() string {
	tags := make([]Tag, 0, len(d))
	for t := range d {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	var b strings.Builder
	b.WriteByte('{')
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(' ')
		}
		if sensitive[t] {
			fmt.Fprintf(&b, "%s:[%d bytes]", t, len(d[t]))
		} else {
			fmt.Fprintf(&b, "%s:%X", t, d[t])
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Format prints the masked form for every verb, so %d or %#v cannot reach the values.
func (d Data) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

// LogValue implements slog.LogValuer.
func (d Data) LogValue() slog.Value { return slog.StringValue(d.String()) }
