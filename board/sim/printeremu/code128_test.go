package printeremu

import (
	"slices"
	"testing"
)

func TestCode128Table(t *testing.T) {
	seen := map[string]int{}
	for v, w := range code128Widths {
		if len(w) != 6 {
			t.Fatalf("value %d: %q has %d elements", v, w, len(w))
		}
		sum, bars := 0, 0
		for i, c := range w {
			sum += int(c - '0')
			if i%2 == 0 {
				bars += int(c - '0')
			}
		}
		// Every symbol is 11 modules and its bars cover an even number of them: the
		// symbology's own check on its table.
		if sum != 11 || bars%2 != 0 {
			t.Errorf("value %d: %q sums to %d, bars %d", v, w, sum, bars)
		}
		if prev, dup := seen[w]; dup {
			t.Errorf("values %d and %d share %q", prev, v, w)
		}
		seen[w] = v
	}
	sum := 0
	for _, c := range code128Stop {
		sum += int(c - '0')
	}
	if sum != 13 {
		t.Errorf("stop symbol sums to %d", sum)
	}
}

func TestDecodeCode128(t *testing.T) {
	tests := []struct {
		data   string
		values []int
		text   string
	}{
		// Start B (104), "A"=33, "1"=17; check (104 + 33 + 2*17) mod 103 = 68.
		{"{BA1", []int{104, 33, 17, 68}, "A1"},
		// Start C (105), 12, 34; check (105 + 12 + 68) mod 103 = 82.
		{"{C\x0c\x22", []int{105, 12, 34, 82}, "1234"},
		// A literal brace in set B is doubled: "{" = 91.
		{"{B{{", []int{104, 91, (104 + 91) % 103}, "{"},
		// Set switch B -> C: CODE C = 99.
		{"{Bx{C\x05", []int{104, 88, 99, 5, (104 + 88 + 2*99 + 3*5) % 103}, "x05"},
	}
	for _, tt := range tests {
		c, err := decodeCode128([]byte(tt.data))
		if err != nil {
			t.Errorf("%q: %v", tt.data, err)
			continue
		}
		if c.text != tt.text || !slices.Equal(c.values, tt.values) {
			t.Errorf("%q: values %v text %q, want %v %q", tt.data, c.values, c.text, tt.values, tt.text)
		}
		mods := c.modules()
		if want := 11*len(c.values) + 13; len(mods) != want || !mods[0] || !mods[len(mods)-1] {
			t.Errorf("%q: %d modules, want %d starting and ending with a bar", tt.data, len(mods), want)
		}
	}
	for _, bad := range []string{"", "AB", "{X1", "{C\x64", "{B\x01", "{C{S1", "{B{B1", "{"} {
		if _, err := decodeCode128([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
