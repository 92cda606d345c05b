package plot

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"testing"
)

func render(t *testing.T, c Chart) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := c.PNG(&buf); err != nil {
		t.Fatalf("PNG: %v", err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("output is not a PNG: %v", err)
	}
	return img
}

// count returns how many pixels are exactly colour want (opaque, so premultiplied or not
// is the same).
func count(img image.Image, want color.RGBA) int {
	b := img.Bounds()
	rgba := image.NewRGBA(b)
	draw.Draw(rgba, b, img, b.Min, draw.Src)
	n := 0
	for i := 0; i+3 < len(rgba.Pix); i += 4 {
		if rgba.Pix[i] == want.R && rgba.Pix[i+1] == want.G && rgba.Pix[i+2] == want.B && rgba.Pix[i+3] == want.A {
			n++
		}
	}
	return n
}

// ramp is a storm-like series: connections rising to level by step.
func ramp(level float64, points int) []Point {
	ps := make([]Point, points)
	for i := range ps {
		ps[i] = Point{X: float64(i), Y: level * float64(i) / float64(points-1)}
	}
	return ps
}

func TestSizeAsked(t *testing.T) {
	for _, tc := range []struct{ w, h, wantW, wantH int }{
		{0, 0, DefaultWidth, DefaultHeight},
		{333, 177, 333, 177},
	} {
		img := render(t, Chart{Title: "t", Width: tc.w, Height: tc.h,
			Series: []Series{{Name: "a", Points: ramp(10, 20)}}})
		if got := img.Bounds().Size(); got != image.Pt(tc.wantW, tc.wantH) {
			t.Errorf("asked %dx%d: got %v, want %dx%d", tc.w, tc.h, got, tc.wantW, tc.wantH)
		}
	}
	if err := (Chart{Width: -1}).PNG(&bytes.Buffer{}); !errors.Is(err, ErrSize) {
		t.Fatalf("negative width: %v", err)
	}
}

// Every series shows up in its own colour, and the colours differ from each other.
func TestSeriesColours(t *testing.T) {
	const n = 4
	c := Chart{Title: "connections", XLabel: "s", YLabel: "terminals", Width: 500, Height: 250}
	for i := range n {
		c.Series = append(c.Series, Series{Name: string(rune('a' + i)), Points: ramp(float64(100*(i+1)), 50)})
	}
	img := render(t, c)
	seen := map[color.RGBA]bool{}
	for i := range n {
		col := SeriesColor(i)
		if seen[col] {
			t.Fatalf("series %d shares colour %v", i, col)
		}
		seen[col] = true
		if got := count(img, col); got < 50 {
			t.Errorf("series %d colour %v: %d pixels, want a drawn line", i, col, got)
		}
	}
	// Unused palette colours are absent: the pixels above belong to the series.
	for i := n; i < len(Palette); i++ {
		if got := count(img, SeriesColor(i)); got != 0 {
			t.Errorf("unused colour %v has %d pixels", SeriesColor(i), got)
		}
	}
}

// A series without points costs a legend entry only; the chart with it and with nothing at
// all still renders.
func TestEmptySeries(t *testing.T) {
	img := render(t, Chart{Width: 500, Height: 250, Series: []Series{
		{Name: "with jitter", Points: ramp(500, 100)},
		{Name: "no jitter"},
	}})
	line := count(img, SeriesColor(0))
	legendOnly := count(img, SeriesColor(1))
	if line == 0 || legendOnly == 0 {
		t.Fatalf("pixels: drawn series %d, empty series %d; want both present", line, legendOnly)
	}
	if legendOnly >= line {
		t.Fatalf("empty series has %d pixels, more than the drawn one (%d): was it drawn?", legendOnly, line)
	}

	// Unnamed and empty: nothing of its colour at all.
	img = render(t, Chart{Width: 300, Height: 150, Series: []Series{{}}})
	if got := count(img, SeriesColor(0)); got != 0 {
		t.Fatalf("unnamed empty series drew %d pixels", got)
	}
	render(t, Chart{Title: "nothing", Width: 300, Height: 150})
	// One point (zero ranges on both axes) still renders.
	img = render(t, Chart{Width: 300, Height: 150, Series: []Series{{Name: "one", Points: []Point{{X: 5, Y: 7}}}}})
	if img.Bounds().Dx() != 300 {
		t.Fatalf("size %v", img.Bounds())
	}
}

func TestNotFinite(t *testing.T) {
	for _, bad := range []Point{{X: math.NaN()}, {Y: math.Inf(1)}, {X: math.Inf(-1)}} {
		c := Chart{Series: []Series{{Name: "s", Points: []Point{{X: 0, Y: 0}, bad}}}}
		if err := c.PNG(&bytes.Buffer{}); err == nil {
			t.Fatalf("point %v accepted", bad)
		}
	}
}

func BenchmarkStormChart(b *testing.B) {
	// 10 minutes of 100 ms buckets, two series: the storm chart make fleet draws.
	c := Chart{Title: "reconnect storm", Series: []Series{
		{Name: "jitter", Points: ramp(10000, 6000)},
		{Name: "no jitter", Points: ramp(10000, 6000)},
	}}
	for range b.N {
		if err := c.PNG(&bytes.Buffer{}); err != nil {
			b.Fatal(err)
		}
	}
}
