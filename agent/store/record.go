package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
)

// recordFormat is the first byte of a checked record.
const recordFormat = 1

// Check frames a payload as [format][SHA-256(payload)][payload]. bbolt checksums only its meta
// pages, so a record that must not be mistaken for another after flash rot (a configuration,
// a licence) carries its own check.
func Check(payload []byte) []byte {
	sum := sha256.Sum256(payload)
	out := make([]byte, 0, 1+len(sum)+len(payload))
	out = append(out, recordFormat)
	out = append(out, sum[:]...)
	return append(out, payload...)
}

// Checked returns the payload of a record framed by Check, or why it cannot be trusted.
func Checked(raw []byte) ([]byte, error) {
	switch {
	case raw == nil:
		return nil, errors.New("missing")
	case len(raw) < 1+sha256.Size:
		return nil, fmt.Errorf("%d bytes, too short", len(raw))
	case raw[0] != recordFormat:
		return nil, fmt.Errorf("record format %d, want %d", raw[0], recordFormat)
	}
	payload := raw[1+sha256.Size:]
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], raw[1:1+sha256.Size]) {
		return nil, errors.New("checksum mismatch")
	}
	return payload, nil
}
