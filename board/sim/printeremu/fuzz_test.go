package printeremu

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes to the ESC/POS interpreter: it must not panic or loop,
// and no receipt may be longer than the limit. Pixels are not kept (a few bytes of feed
// commands make metres of blank paper, which would only make the fuzzer slow); the drawing
// code still runs.
func FuzzParse(f *testing.F) {
	f.Add([]byte("\x1b@\x1bt\x11\x8f\xe0\xa8\xa2\xa5\xe2\n\x1dV\x42\x00"))
	f.Add([]byte("\x1d(k\x04\x001A2\x00\x1d(k\x03\x001C\x06\x1d(k\x06\x001P0abc\x1d(k\x03\x001Q0"))
	f.Add([]byte("\x1dh\x28\x1dw\x02\x1dH\x02\x1dkI\x06{BRC-1\x1dk\x04123\x00"))
	f.Add([]byte("\x1dv0\x00\x02\x00\x02\x00\xf0\x0f\xff\x00\x1d(H\x06\x0000\x30\x30\x34\x32"))
	f.Add([]byte("\x1c&\xd6\xd0\x81\x30\x81\x30\x1c.\x1b!\xff\x1d!\x77x\tx\n\x1bd\x05\x10\x04\x01"))
	f.Add([]byte("\x1b&\x03AB\x02\x00\x00\x00\x00\x00\x00\x1bD\x08\x10\x00\x1c(A\x02\x00\x30\x30\x1d8L\x01\x00\x00\x00x"))
	cfg := Config{MaxReceiptRows: 1024, KeepReceipts: 2}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, _, err := render(data, cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Image.Rect.Dx() != 384 || r.Image.Rect.Dy() > 1024 {
				t.Fatalf("receipt %v", r.Image.Rect)
			}
		}
	})
}

func TestRealTimeFilter(t *testing.T) {
	in := []byte{
		'a', 0x10, 0x04, 0x01, // DLE EOT 1
		0x10, 0x04, 0x07, // n out of range: data
		0x10, 0x10, 0x04, 0x02, // a DLE, then DLE EOT 2
		0x10, 0x14, 0x08, 0x01, 0x03, 0x14, 0x01, 0x06, 0x02, 0x08, // clear buffers
		0x10, 0x14, 0x08, 0x01, 0x03, 0x14, 0x01, 0x06, 0x02, 0x09, // almost: data
		0x10, 0x05, 0x02, // DLE ENQ 2
		0x10, // held at the end
	}
	var data []byte
	var cmds [][]byte
	var f rtFilter
	for _, b := range in {
		f.feed(b, func(d byte) { data = append(data, d) }, func(c []byte) { cmds = append(cmds, append([]byte(nil), c...)) })
	}
	wantData := []byte{'a', 0x10, 0x04, 0x07, 0x10, 0x10, 0x14, 0x08, 0x01, 0x03, 0x14, 0x01, 0x06, 0x02, 0x09}
	if string(data) != string(wantData) {
		t.Errorf("data % x\nwant % x", data, wantData)
	}
	if len(cmds) != 4 || cmds[0][2] != 1 || cmds[1][2] != 2 || cmds[2][2] != 8 || cmds[3][1] != 0x05 {
		t.Errorf("commands % x", cmds)
	}
	if len(f.held) != 1 {
		t.Errorf("held % x", f.held)
	}
}
