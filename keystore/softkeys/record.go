package softkeys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/posagent/posagent/keystore"
)

const (
	nonceSize = 12
	headSize  = 2 // usage, algorithm
	sealInfo  = "posagent softkeys v1 seal"
	aadPrefix = "posagent softkeys v1 slot "
)

// errRecord is why a record does not open. It never says more: the reason (forged, other
// device, moved) is not something the record can tell apart, and the content is secret.
var errRecord = errors.New("softkeys: sealed record does not open")

// record is an opened slot. key is the clear key: zero it with wipe when done.
type record struct {
	usage keystore.Usage
	alg   keystore.Algorithm
	key   []byte
}

func (r *record) wipe() {
	if r != nil {
		clear(r.key)
	}
}

// newAEAD derives the sealing key from the root key and returns its AES-256-GCM.
func newAEAD(root []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, root, nil, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func slotKey(slot int) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(slot))
}

func aad(slot int) []byte {
	return strconv.AppendInt([]byte(aadPrefix), int64(slot), 10)
}

// validKey says whether a key of this usage, algorithm and length can be in slot.
func validKey(slot int, u keystore.Usage, alg keystore.Algorithm, n int) bool {
	if (slot == keystore.TransportSlot) != (u == keystore.UsageTransport) {
		return false
	}
	switch u {
	case keystore.UsageTransport, keystore.UsageKEK, keystore.UsagePIK, keystore.UsageMAK, keystore.UsageTDK:
	default:
		return false
	}
	switch alg {
	case keystore.TDES:
		return n == 8 || n == 16 || n == 24
	case keystore.AES:
		return (u == keystore.UsageTransport || u == keystore.UsageKEK) && (n == 16 || n == 24 || n == 32)
	}
	return false
}

// sealRecord seals r for slot.
func sealRecord(aead cipher.AEAD, slot int, r *record) []byte {
	pt := make([]byte, 0, headSize+len(r.key))
	pt = append(pt, byte(r.usage), byte(r.alg))
	pt = append(pt, r.key...)
	defer clear(pt)
	out := make([]byte, nonceSize, nonceSize+len(pt)+aead.Overhead())
	rand.Read(out)
	return aead.Seal(out, out[:nonceSize], pt, aad(slot))
}

// openRecord opens the sealed value of slot. It fails on anything that sealRecord could not
// have written for this slot under this key; it never panics. val is only read (it may be in
// the database's memory map); the record's key is a fresh buffer.
func openRecord(aead cipher.AEAD, slot int, val []byte) (*record, error) {
	if slot < 0 || len(val) < nonceSize+aead.Overhead()+headSize {
		return nil, errRecord
	}
	pt, err := aead.Open(nil, val[:nonceSize], val[nonceSize:], aad(slot))
	if err != nil {
		return nil, errRecord
	}
	r, err := decodePlain(slot, pt)
	if err != nil {
		clear(pt)
		return nil, err
	}
	return r, nil
}

// decodePlain decodes an opened record's plaintext, usage ‖ algorithm ‖ key; the record's key
// aliases pt.
func decodePlain(slot int, pt []byte) (*record, error) {
	if len(pt) < headSize {
		return nil, errRecord
	}
	r := &record{usage: keystore.Usage(pt[0]), alg: keystore.Algorithm(pt[1])}
	if !validKey(slot, r.usage, r.alg, len(pt)-headSize) {
		return nil, errRecord
	}
	r.key = pt[headSize:]
	return r, nil
}
