package wire

import (
	"bytes"
	"testing"
)

// FuzzDecoder: whatever the line carries, fed in any pieces, the decoder neither panics nor
// holds more than one frame's worth of undecoded bytes, and every frame it returns is one
// that occurs in the input with a correct CRC.
func FuzzDecoder(f *testing.F) {
	f.Add(AppendFrame([]byte{0xFF, ACK}, Frame{Seq: 1, Type: CmdStatus | Response, Data: []byte{0, 7, 0, 0}}), uint8(3))
	f.Add([]byte{STX, 0x00, 0x02, 1, 1, ETX, 0xC8, 0x06, NAK}, uint8(1))
	f.Add([]byte{STX, 0x04, 0x00, STX, 0x00}, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		n := int(step%16) + 1
		var d Decoder
		for i := 0; i < len(b); i += n {
			d.Write(b[i:min(i+n, len(b))])
			for {
				it, ok := d.Next()
				if !ok {
					break
				}
				if it.Kind == KindFrame && !bytes.Contains(b, AppendFrame(nil, it.Frame)) {
					t.Fatalf("frame %+v not in the input", it.Frame)
				}
			}
			if len(d.buf)-d.head > MaxBody+Overhead+n {
				t.Fatalf("%d bytes held", len(d.buf)-d.head)
			}
		}
		for {
			if _, ok := d.Expire(); !ok {
				break
			}
			for {
				if _, ok := d.Next(); !ok {
					break
				}
			}
		}
	})
}
