package config

import (
	"errors"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "4096": 4096, "4096B": 4096, "512KiB": 512 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30,
		"16mib": 16 << 20, " 2 MiB ": 2 << 20, "10MB": 10_000_000, "3kb": 3000, "1GB": 1_000_000_000,
		"8589934591GiB": 8589934591 << 30,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "16 MiBs", "16XB", "8589934592GiB",
		"99999999999999999999", "1e6", "0x10"} {
		_, err := ParseByteSize(in)
		var ve *ValueError
		if !errors.As(err, &ve) {
			t.Errorf("ParseByteSize(%q) = %v, want *ValueError", in, err)
		}
	}
}

func TestByteSizeStringRoundTrips(t *testing.T) {
	for _, b := range []ByteSize{0, 1, 1000, 1024, 1536, 16 << 20, 1 << 30, 3_000_000, 123457} {
		text, _ := b.MarshalText()
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != b {
			t.Errorf("%d -> %q -> %d, %v", b, text, back, err)
		}
	}
	if s := ByteSize(16 << 20).String(); s != "16MiB" {
		t.Errorf("String = %q", s)
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalTOML("1h30m"); err != nil || d.D() != 90*time.Minute {
		t.Errorf("1h30m = %v, %v", d, err)
	}
	if err := d.UnmarshalTOML(int64(300)); err == nil {
		t.Error("integer duration accepted")
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("junk duration accepted")
	}
	text, _ := Duration(5 * time.Minute).MarshalText()
	if string(text) != "5m0s" {
		t.Errorf("MarshalText = %q", text)
	}
}
