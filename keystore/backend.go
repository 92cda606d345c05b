// Package keystore keeps the terminal's key hierarchy: the transport key injected at the
// factory wraps terminal master keys (KEKs), a KEK wraps the working keys — the PIN key
// (PIK), the MAC key (MAK) and the data key (TDK) — that payments use.
//
// Keys live in a Backend, addressed by physical slot: the PIN pad's secure element on a
// real terminal (keystore/padkeys), or sealed software storage (keystore/softkeys). Nothing
// outside a backend ever holds a clear key; callers name keys by role ("kek1", "pik"…) and
// get check values, never key bytes.
//
// The Store maps roles to physical slots and writes that map in one transaction after the
// new keys are in free slots, so a key set is replaced as a whole: a power cut during a load
// leaves the old set or the new one, never a mix.
package keystore

import (
	"context"
	"errors"
	"fmt"
)

// Usage is what a key may be used for.
type Usage uint8

// Key usages (the values of the PIN pad protocol).
const (
	UsageTransport Usage = 0x00 // wraps KEKs; injected at the factory
	UsageKEK       Usage = 0x01 // terminal master key: wraps working keys
	UsagePIK       Usage = 0x02 // PIN encryption
	UsageMAK       Usage = 0x03 // MAC
	UsageTDK       Usage = 0x04 // data encryption
)

func (u Usage) String() string {
	switch u {
	case UsageTransport:
		return "transport"
	case UsageKEK:
		return "kek"
	case UsagePIK:
		return "pik"
	case UsageMAK:
		return "mak"
	case UsageTDK:
		return "tdk"
	}
	return fmt.Sprintf("usage(%d)", uint8(u))
}

// Algorithm is a key's cipher.
type Algorithm uint8

// Algorithms.
const (
	TDES Algorithm = iota // 8 (single DES as K1=K2=K3), 16 or 24 bytes
	AES                   // 16, 24 or 32 bytes; KEKs only (they unwrap TR-31 version D blocks)
)

func (a Algorithm) String() string {
	if a == AES {
		return "aes"
	}
	return "tdes"
}

// MACAlgorithm names a MAC computed with a MAK.
type MACAlgorithm uint8

// MAC algorithms (the values of the PIN pad protocol's MAC command).
const (
	MACX99         MACAlgorithm = 0x01 // ANSI X9.9: DES CBC-MAC, 8-byte key
	MACX919        MACAlgorithm = 0x02 // ANSI X9.19 retail MAC, 16/24-byte key
	MACUnionPayECB MACAlgorithm = 0x03 // UnionPay POS "ECB" MAC: 8 ASCII hex characters
)

// Key describes a loaded key slot: never the key itself.
type Key struct {
	Slot      int
	Usage     Usage
	Algorithm Algorithm
	Length    int    // bytes
	KCV       string // check value, 6 upper-case hex digits (TDES: E(K, 0…0); AES: CMAC-based)
}

// TransportSlot is the physical slot of the transport key in every backend.
const TransportSlot = 0

// Backend is where keys live, addressed by physical slot (1..MaxSlot for loaded keys).
// Implementations enforce the hierarchy themselves: a KEK only under the transport key, a
// working key only under a KEK; on any error the slot keeps its previous key; a key is
// durable before a load returns.
type Backend interface {
	// Name is "pinpad" or "software", for stats and logs.
	Name() string
	// MaxSlot is the highest physical slot.
	MaxSlot() int
	// LoadBlock unwraps a TR-31 key block (versions B and D) with the key in slot parent as
	// the key block protection key and stores the key in slot. The block's header decides the
	// usage (K0/K1 KEK, P0 PIK, M0/M1/M3 MAK, D0 TDK) and algorithm.
	LoadBlock(ctx context.Context, slot, parent int, block string) (Key, error)
	// LoadEncrypted stores a TDES key of usage u encrypted (TDES-ECB) under the KEK in slot
	// parent, after checking its check value (3 or 4 bytes of E(K, 0…0)): the form of the
	// working keys in a UnionPay sign-in answer.
	LoadEncrypted(ctx context.Context, slot, parent int, u Usage, encrypted, check []byte) (Key, error)
	// MAC computes a MAC over data with the MAK in slot.
	MAC(ctx context.Context, slot int, alg MACAlgorithm, data []byte) ([]byte, error)
	// Erase zeroises every loaded key; with transport, the transport key too.
	Erase(ctx context.Context, transport bool) error
	// Keys lists the loaded slots, transport key included.
	Keys(ctx context.Context) ([]Key, error)
}

// Errors every backend returns (wrapped), so callers and the TMS get the same reasons
// whichever backend holds the keys.
var (
	ErrNoKey       = errors.New("keystore: no key in the slot")
	ErrWrongUsage  = errors.New("keystore: key usage not allowed here")
	ErrKCVMismatch = errors.New("keystore: key check value does not match")
	ErrBadKeyBlock = errors.New("keystore: key block rejected") // malformed, tampered, wrong KBPK
	ErrBadSlot     = errors.New("keystore: slot out of range")
	ErrBadLength   = errors.New("keystore: key or data length not allowed")
)
