package config

import (
	"errors"
	"testing"
)

// The file can arrive through provisioning or a future config.apply: parsing it must never
// panic, and whatever it accepts must be valid.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("device_id = \"SIM000001\"\nboard = \"sim\"\n[tms]\nbroker = \"ssl://b:8883\"\nkeepalive = \"5m\"\n"))
	f.Add([]byte("[outbox]\nmax_bytes = \"16MiB\"\n[log]\nmax_size = 4096\n"))
	f.Add([]byte("[[tms.command_keys]]\nid = \"k\"\npublic_key = \"XmjxkeK4JjX5EjCR5LCC3JTdvOT6gk9Y6bcwgJGTA0c=\"\n"))
	f.Add([]byte("unknown = 1\n[tms]\nkeepalive = 300\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		if _, err := c.CommandKeys(); err != nil {
			t.Fatalf("Parse accepted bad command keys: %v", err)
		}
	})
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"16MiB", "0", "4096B", " 2 kib", "9223372036854775807", "1.5MiB", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValueError", err)
			}
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, b)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, b, b.String(), back, err)
		}
	})
}
