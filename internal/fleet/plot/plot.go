// Package plot draws the fleet simulator's line charts (connections over time during a
// reconnect storm) as PNG files for docs/fleet.md. It is a thin layer over gonum's plot
// package so that callers deal in plain points, and it is for tools only: the agent binary
// must not import it.
package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Default size in pixels.
const (
	DefaultWidth  = 1000
	DefaultHeight = 500
)

// Point is one sample.
type Point struct{ X, Y float64 }

// Series is one named line.
type Series struct {
	Name   string
	Points []Point
}

// Chart is a line chart. Series are drawn in order, each in its own colour (Palette,
// cycled when there are more series than colours). A series with no points still gets its
// legend entry, marked "(no data)", so a reader knows it was measured.
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series
	Width, Height         int // px, default 1000x500
}

// ErrSize reports a negative width or height.
var ErrSize = errors.New("plot: negative chart size")

// Palette is the series colours: strong, mutually distinct, readable on white.
var Palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // blue
	{0xd6, 0x27, 0x28, 0xff}, // red
	{0x2c, 0xa0, 0x2c, 0xff}, // green
	{0xff, 0x7f, 0x0e, 0xff}, // orange
	{0x94, 0x67, 0xbd, 0xff}, // purple
	{0x8c, 0x56, 0x4b, 0xff}, // brown
	{0xe3, 0x77, 0xc2, 0xff}, // pink
	{0x17, 0xbe, 0xcf, 0xff}, // cyan
}

// SeriesColor is the colour of the i-th series.
func SeriesColor(i int) color.RGBA { return Palette[i%len(Palette)] }

// PNG renders the chart. Points that are not finite are an error (naming the series), not
// silently dropped: they mean a bug in whoever computed them.
func (c Chart) PNG(w io.Writer) error {
	width, height := c.Width, c.Height
	if width < 0 || height < 0 {
		return fmt.Errorf("%w: %dx%d", ErrSize, width, height)
	}
	if width == 0 {
		width = DefaultWidth
	}
	if height == 0 {
		height = DefaultHeight
	}

	p := gplot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Title.Padding = vg.Points(6)
	// Bottom right: the curves drawn here (connections coming back) rise from the left, so
	// that corner is where the legend hides the least.
	p.Legend.XOffs = -vg.Points(12)
	p.Legend.YOffs = vg.Points(12)
	p.Add(plotter.NewGrid())

	for i, s := range c.Series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			if !finite(pt.X) || !finite(pt.Y) {
				return fmt.Errorf("plot: series %q point %d (%v, %v) is not finite", s.Name, j, pt.X, pt.Y)
			}
			xys[j] = plotter.XY{X: pt.X, Y: pt.Y}
		}
		line := &plotter.Line{XYs: xys, LineStyle: draw.LineStyle{
			Color: SeriesColor(i),
			Width: vg.Points(2),
		}}
		if len(xys) > 0 {
			p.Add(line)
		}
		if s.Name != "" {
			name := s.Name
			if len(xys) == 0 {
				name += " (no data)"
			}
			p.Legend.Add(name, line)
		}
	}

	if p.Y.Max > p.Y.Min {
		p.Y.Max += 0.05 * (p.Y.Max - p.Y.Min) // a plateau should not sit on the frame
	}

	img := image.NewRGBA(image.Rect(0, 0, width, height))
	canvas := vgimg.NewWith(vgimg.UseImage(img))
	p.Draw(draw.New(canvas))
	if err := png.Encode(w, canvas.Image()); err != nil {
		return fmt.Errorf("plot: encode PNG: %w", err)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
