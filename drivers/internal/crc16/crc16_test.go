package crc16

import "testing"

func TestCheckValue(t *testing.T) {
	// The catalogue check value of CRC-16/CCITT-FALSE.
	if got := Checksum([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("check value %#04x, want 0x29b1", got)
	}
	if got := Update(Update(Init, []byte("1234")), []byte("56789")); got != 0x29B1 {
		t.Fatalf("in pieces %#04x", got)
	}
	if Checksum(nil) != Init {
		t.Fatal("empty input")
	}
}
