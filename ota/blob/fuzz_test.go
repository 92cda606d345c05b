package blob

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeBlock: whatever the TMS (or anyone who can publish on the topic) sends, the
// decoder either refuses it or returns a block that keeps the invariants the client relies on,
// and that encodes back to a payload decoding to the same block.
func FuzzDecodeBlock(f *testing.F) {
	for _, b := range []Block{
		{Offset: 0, Data: []byte("hello"), Size: 5},
		{Offset: 65536, Data: bytes.Repeat([]byte{0xAB}, 100), Size: 70000},
		{Error: ErrTextUnknown},
	} {
		p, err := EncodeBlock(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := DecodeBlock(payload)
		if err != nil {
			return
		}
		if b.Error != "" {
			if len(b.Data) != 0 || len(b.Error) > MaxErrorLen {
				t.Fatalf("error answer %+v", b)
			}
		} else if len(b.Data) == 0 || len(b.Data) > BlockSize || b.Offset+uint64(len(b.Data)) > b.Size {
			t.Fatalf("block breaks the bounds: offset %d, %d bytes, size %d", b.Offset, len(b.Data), b.Size)
		}
		again, err := EncodeBlock(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := DecodeBlock(again)
		if err != nil || b2.Offset != b.Offset || b2.Size != b.Size || b2.Error != b.Error || !bytes.Equal(b2.Data, b.Data) {
			t.Fatalf("round trip: %+v, %v", b2, err)
		}
	})
}

// FuzzDecodeRequest: the server's decoder of what terminals send.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []Request{{Offset: 0, Length: BlockSize}, {Offset: 1 << 20, Length: 1}} {
		p, err := EncodeRequest("abc", 7, time.Unix(1700000000, 0), r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("abc", p)
	}
	f.Fuzz(func(t *testing.T, tid string, payload []byte) {
		r, err := DecodeRequest(tid, payload)
		if err != nil {
			return
		}
		if r.Length == 0 || r.Length > MaxRequestLength {
			t.Fatalf("request %+v", r)
		}
		again, err := EncodeRequest(tid, 1, time.Now(), r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := DecodeRequest(tid, again); err != nil || r2 != r {
			t.Fatalf("round trip: %+v, %v", r2, err)
		}
	})
}
