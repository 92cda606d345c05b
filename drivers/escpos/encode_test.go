package escpos

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"strings"
	"testing"
)

func encodeJob(t *testing.T, j *Job, m Model) []byte {
	t.Helper()
	var b bytes.Buffer
	n, err := j.Encode(&b, m)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("Encode said %d bytes, wrote %d", n, b.Len())
	}
	return b.Bytes()
}

func TestEncodeJob(t *testing.T) {
	j := NewJob().Align(Center).Bold(true).Size(2, 2).Line("SHOP").
		Bold(false).Size(1, 1).Align(Left).Text("a").Underline(true).Text("b").Underline(false).
		Feed(2).Cut()
	got := encodeJob(t, j, Generic58)
	want := cat(
		[]byte{0x1B, '@'},
		[]byte{0x1B, 'a', 1, 0x1B, 'E', 1, 0x1D, '!', 0x11}, []byte("SHOP\n"),
		[]byte{0x1B, 'a', 0, 0x1B, 'E', 0, 0x1D, '!', 0x00}, []byte("a"),
		[]byte{0x1B, '-', 1}, []byte("b\n"),
		[]byte{0x1B, 'd', 2},
		[]byte{0x1D, 'V', 66, 0},
	)
	if !bytes.Equal(got, want) {
		t.Errorf("% x\nwant % x", got, want)
	}
	if j.Len() != 4 {
		t.Errorf("%d elements, want 4 (two lines, feed, cut)", j.Len())
	}
}

func TestEncodeCodes(t *testing.T) {
	j := NewJob().QR("https://e.kz/1", QROptions{Size: 4, Level: QRLevelQ}).Barcode128("12345678", BarcodeOptions{HRI: HRINone})
	got := encodeJob(t, j, Generic58)
	want := cat(
		[]byte{0x1B, '@'},
		[]byte{0x1D, '(', 'k', 4, 0, 49, 65, 50, 0, 0x1D, '(', 'k', 3, 0, 49, 67, 4, 0x1D, '(', 'k', 3, 0, 49, 69, 50},
		[]byte{0x1D, '(', 'k', 17, 0, 49, 80, 48}, []byte("https://e.kz/1"),
		[]byte{0x1D, '(', 'k', 3, 0, 49, 81, 48},
		[]byte{0x1D, 'h', 80, 0x1D, 'w', 2, 0x1D, 'H', 0, 0x1D, 'k', 73, 6, '{', 'C', 12, 34, 56, 78},
	)
	if !bytes.Equal(got, want) {
		t.Errorf("% x\nwant % x", got, want)
	}
	p, n, err := code128Payload("A{1")
	if err != nil || string(p) != "{BA{{1" || n != 3 {
		t.Errorf("payload %q %d %v", p, n, err)
	}
}

func TestBuildErrors(t *testing.T) {
	for name, j := range map[string]*Job{
		"feed 0":           NewJob().Feed(0),
		"qr control":       NewJob().QR("a\x10\x04\x01", QROptions{}),
		"qr empty":         NewJob().QR("", QROptions{}),
		"qr size":          NewJob().QR("x", QROptions{Size: 17}),
		"barcode unicode":  NewJob().Barcode128("Ж", BarcodeOptions{}),
		"barcode module":   NewJob().Barcode128("1", BarcodeOptions{Module: 7}),
		"image nil":        NewJob().Image(nil),
		"barcode too wide": NewJob().Barcode128(strings.Repeat("x", 20), BarcodeOptions{Module: 3}),
		"empty":            NewJob(),
	} {
		if _, err := j.Encode(&bytes.Buffer{}, Generic58); !errors.Is(err, ErrBadJob) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The first mistake sticks.
	j := NewJob().Feed(0).Line("x")
	if j.Err() == nil || !strings.Contains(j.Err().Error(), "feed") {
		t.Errorf("err %v", j.Err())
	}
}

// pattern is a black and white image whose rows are the given bytes (1 = black).
func pattern(rows ...[]byte) image.Image {
	img := image.NewGray(image.Rect(0, 0, len(rows[0])*8, len(rows)))
	for y, row := range rows {
		for x := 0; x < len(row)*8; x++ {
			c := color.Gray{255}
			if row[x/8]&(0x80>>uint(x%8)) != 0 {
				c = color.Gray{0}
			}
			img.SetGray(x, y, c)
		}
	}
	return img
}

func TestEncodeRasterNeverFormsRealTimeCommands(t *testing.T) {
	img := pattern([]byte{0x10, 0x04, 0x10, 0x14}, []byte{0x01, 0x10, 0x05, 0xFF})
	got := encodeJob(t, NewJob().Image(img), Generic58)
	want := cat([]byte{0x1B, '@', 0x1D, 'v', '0', 0, 4, 0, 2, 0}, []byte{0x10, 0x06, 0x10, 0x16, 0x01, 0x10, 0x07, 0xFF})
	if !bytes.Equal(got, want) {
		t.Errorf("% x\nwant % x", got, want)
	}
}

func TestEncodeRasterScalesAndDithers(t *testing.T) {
	// 800 x 100 mid grey: scaled to 384 x 48, about half the dots black.
	img := image.NewUniform(color.Gray{128})
	sub := &boundedImage{img, image.Rect(0, 0, 800, 100)}
	got := encodeJob(t, NewJob().Image(sub), Generic58)
	head := []byte{0x1B, '@', 0x1D, 'v', '0', 0, 48, 0, 42, 0}
	if !bytes.HasPrefix(got, head) {
		t.Fatalf("starts % x", got[:12])
	}
	black := 0
	rows := 0
	for i := 0; i < len(got); {
		if bytes.HasPrefix(got[i:], []byte{0x1D, 'v', '0'}) {
			n := int(got[i+6]) | int(got[i+7])<<8
			data := got[i+8 : i+8+48*n]
			for _, b := range data {
				for ; b != 0; b &= b - 1 {
					black++
				}
			}
			rows += n
			i += 8 + 48*n
			continue
		}
		i++
	}
	if rows != 48 {
		t.Errorf("%d rows, want 48", rows)
	}
	if total := 384 * 48; black < total*4/10 || black > total*6/10 {
		t.Errorf("%d of %d dots black for 50%% grey", black, total)
	}
}

type boundedImage struct {
	image.Image
	r image.Rectangle
}

func (b *boundedImage) Bounds() image.Rectangle { return b.r }
