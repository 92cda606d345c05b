package printeremu

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFontBinarySearchMatchesFile(t *testing.T) {
	if _, err := os.Stat(DefaultFontPath); err != nil {
		t.Skip("unifont is not installed (Debian package unifont)")
	}
	f := openFont("")
	defer f.close()
	file, err := os.Open(DefaultFontPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	n := 0
	var prev rune = -1
	for sc.Scan() {
		cp, want := parseHexLine(sc.Bytes())
		if cp < 0 || want == nil {
			t.Fatalf("line %d does not parse: %q", n+1, sc.Text())
		}
		// Every 97th line, the first and a few CJK ones, plus the code point just past a
		// gap (which must not be found).
		if n%97 == 0 || cp == 0x4E2D || cp == 0x0416 {
			if got := f.lookup(cp); got == nil || *got != *want {
				t.Fatalf("U+%04X: binary search found %v", cp, got)
			}
		}
		if cp > prev+1 && n%7 == 0 {
			if got := f.lookup(prev + 1); got != nil {
				t.Fatalf("U+%04X is not in the file but was found", prev+1)
			}
		}
		prev = cp
		n++
	}
	if n < 50000 {
		t.Fatalf("only %d lines read", n)
	}
	if g := f.glyph('中'); !g.wide {
		t.Error("a CJK glyph should be 16 dots wide")
	}
	if f.lookup(0x10FFFF) != nil || f.lookup(-1) != nil {
		t.Error("out-of-range code points found")
	}
}

func TestFontFallbacks(t *testing.T) {
	f := openFont(filepath.Join(t.TempDir(), "missing.hex"))
	if f.r != nil {
		t.Fatal("a missing file opened")
	}
	a := f.glyph('A')
	if a.ink().Empty() || a.wide {
		t.Error("basicfont should draw an ASCII A")
	}
	if box := f.glyph('Ж'); *box != *boxGlyph() {
		t.Error("a character neither font has should be a box")
	}

	// A file that is not unifont must not be trusted.
	bad := filepath.Join(t.TempDir(), "bad.hex")
	if err := os.WriteFile(bad, []byte(strings.Repeat("x", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	g := openFont(bad)
	defer g.close()
	if got := g.lookup('A'); got != nil {
		t.Error("found a glyph in garbage")
	}
	if g.glyph('A').ink().Empty() {
		t.Error("no fallback glyph for A")
	}
}
