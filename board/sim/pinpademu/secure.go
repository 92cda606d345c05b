package pinpademu

import (
	"bytes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Slot numbers and usages as on the wire.
const (
	transportSlot = 0
	maxSlot       = 15

	usageTransport = 0x00
	usageKEK       = 0x01
	usagePIK       = 0x02
	usageMAK       = 0x03
	usageTDK       = 0x04
)

type keySlot struct {
	usage byte
	key   []byte
}

// secureElement is the software stand-in for the pad's tamper-responsive key store. Clear
// keys exist only here; what leaves is a check value or an encrypted PIN block.
type secureElement struct {
	mu    sync.Mutex
	slots [maxSlot + 1]*keySlot
	file  string // where loaded keys persist; "" keeps them in memory only
}

func newSecureElement(transport []byte, file string) (*secureElement, error) {
	if _, err := tdes(transport); err != nil {
		return nil, fmt.Errorf("pinpademu: transport key: %w", err)
	}
	se := &secureElement{file: file}
	se.slots[transportSlot] = &keySlot{usage: usageTransport, key: bytes.Clone(transport)}
	if file != "" {
		if err := se.restore(); err != nil {
			return nil, err
		}
	}
	return se, nil
}

// tdes builds the TDES cipher of a single, double or triple length key.
func tdes(key []byte) (cipher.Block, error) {
	var k [24]byte
	switch len(key) {
	case 8:
		copy(k[:], key)
		copy(k[8:], key)
		copy(k[16:], key)
	case 16:
		copy(k[:], key)
		copy(k[16:], key[:8])
	case 24:
		copy(k[:], key)
	default:
		return nil, fmt.Errorf("key of %d bytes", len(key))
	}
	defer clear(k[:])
	return des.NewTripleDESCipher(k[:])
}

// checkValue is E(K, 0…0): its first 3 bytes are the ANSI KCV, its first 4 UnionPay's.
func checkValue(key []byte) ([8]byte, error) {
	var out [8]byte
	b, err := tdes(key)
	if err != nil {
		return out, err
	}
	b.Encrypt(out[:], out[:])
	return out, nil
}

type status = byte

// Status codes as on the wire.
const (
	stOK               status = 0x00
	stNotOpen          status = 0x01
	stUnknownCommand   status = 0x02
	stBadParameter     status = 0x03
	stBusy             status = 0x04
	stNoKey            status = 0x05
	stWrongUsage       status = 0x06
	stKCVMismatch      status = 0x07
	stCancelled        status = 0x10
	stEntryTimeout     status = 0x11
	stBypassNotAllowed status = 0x12
	stBypassed         status = 0x13
	stAborted          status = 0x14
	stDeviceError      status = 0x7F
)

// load decrypts a key under its parent, checks its check value and stores it. On any
// refusal the slot keeps what it had.
func (se *secureElement) load(slot int, usage byte, parent int, enc, kcv []byte) ([3]byte, status) {
	var out [3]byte
	switch {
	case slot < 1 || slot > maxSlot || parent < 0 || parent > maxSlot:
		return out, stBadParameter
	case len(enc) != 8 && len(enc) != 16 && len(enc) != 24:
		return out, stBadParameter
	case len(kcv) != 3 && len(kcv) != 4:
		return out, stBadParameter
	case usage < usageKEK || usage > usageTDK:
		return out, stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	p := se.slots[parent]
	if p == nil {
		return out, stNoKey
	}
	// A KEK comes under the transport key; a working key under a KEK. Nothing else may
	// unwrap anything, so a PIN key can never be used to reveal another key.
	if usage == usageKEK && p.usage != usageTransport || usage != usageKEK && p.usage != usageKEK {
		return out, stWrongUsage
	}
	b, err := tdes(p.key)
	if err != nil {
		return out, stDeviceError
	}
	clearKey := make([]byte, len(enc))
	for i := 0; i < len(enc); i += 8 {
		b.Decrypt(clearKey[i:i+8], enc[i:i+8])
	}
	cv, err := checkValue(clearKey)
	if err != nil {
		clear(clearKey)
		return out, stDeviceError
	}
	if subtle.ConstantTimeCompare(cv[:len(kcv)], kcv) != 1 {
		clear(clearKey)
		return out, stKCVMismatch
	}
	old := se.slots[slot]
	se.slots[slot] = &keySlot{usage: usage, key: clearKey}
	if err := se.persist(); err != nil {
		se.slots[slot] = old
		clear(clearKey)
		return out, stDeviceError
	}
	if old != nil {
		clear(old.key)
	}
	copy(out[:], cv[:3])
	return out, stOK
}

func (se *secureElement) kcv(slot int) (usage byte, keyLen int, kcv [3]byte, st status) {
	if slot < 0 || slot > maxSlot {
		return 0, 0, kcv, stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	s := se.slots[slot]
	if s == nil {
		return 0, 0, kcv, stNoKey
	}
	cv, err := checkValue(s.key)
	if err != nil {
		return 0, 0, kcv, stDeviceError
	}
	copy(kcv[:], cv[:3])
	return s.usage, len(s.key), kcv, stOK
}

// erase zeroises the loaded keys, and the transport key too when all is set.
func (se *secureElement) erase(all bool) status {
	se.mu.Lock()
	defer se.mu.Unlock()
	for i, s := range se.slots {
		if s != nil && (i != transportSlot || all) {
			clear(s.key)
			se.slots[i] = nil
		}
	}
	if se.persist() != nil {
		return stDeviceError
	}
	return stOK
}

type slotInfo struct {
	slot, usage byte
	keyLen      int
}

func (se *secureElement) info() []slotInfo {
	se.mu.Lock()
	defer se.mu.Unlock()
	var out []slotInfo
	for i, s := range se.slots {
		if s != nil {
			out = append(out, slotInfo{slot: byte(i), usage: s.usage, keyLen: len(s.key)})
		}
	}
	return out
}

// pinKey checks that slot holds a PIN key.
func (se *secureElement) pinKey(slot int) status {
	if slot < 1 || slot > maxSlot {
		return stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	switch s := se.slots[slot]; {
	case s == nil:
		return stNoKey
	case s.usage != usagePIK:
		return stWrongUsage
	}
	return stOK
}

// pinBlock builds the ISO 9564 format 0 block of pin and pan and encrypts it under the PIN
// key in slot.
func (se *secureElement) pinBlock(slot int, pin []byte, pan string) ([8]byte, status) {
	var out [8]byte
	if st := se.pinKey(slot); st != stOK {
		return out, st
	}
	clearBlock, ok := formatZero(pin, pan)
	if !ok {
		return out, stBadParameter
	}
	defer clear(clearBlock[:])
	se.mu.Lock()
	defer se.mu.Unlock()
	b, err := tdes(se.slots[slot].key)
	if err != nil {
		return out, stDeviceError
	}
	b.Encrypt(out[:], clearBlock[:])
	return out, stOK
}

// formatZero is ISO 9564-1 format 0: the PIN field (0, length, digits, F padding) XOR the
// account field (four zero digits, then the 12 rightmost PAN digits without the check digit).
func formatZero(pin []byte, pan string) ([8]byte, bool) {
	var blk [8]byte
	if len(pin) < 4 || len(pin) > 12 || len(pan) < 13 || len(pan) > 19 {
		return blk, false
	}
	var pinNib, panNib [16]byte
	pinNib[0], pinNib[1] = 0, byte(len(pin))
	for i := 2; i < 16; i++ {
		pinNib[i] = 0xF
	}
	for i, d := range pin {
		if d < '0' || d > '9' {
			return blk, false
		}
		pinNib[2+i] = d - '0'
	}
	acct := pan[len(pan)-13 : len(pan)-1]
	for i := range 12 {
		d := acct[i]
		if d < '0' || d > '9' {
			return blk, false
		}
		panNib[4+i] = d - '0'
	}
	for i := range blk {
		blk[i] = (pinNib[2*i]^panNib[2*i])<<4 | (pinNib[2*i+1] ^ panNib[2*i+1])
	}
	clear(pinNib[:])
	return blk, true
}

// keyFile is the on-disk form of the loaded keys. The emulator holds test keys only; a real
// pad never lets a clear key out of its secure element.
type keyFile struct {
	Slots []keyFileSlot `json:"slots"`
}

type keyFileSlot struct {
	Slot  int    `json:"slot"`
	Usage byte   `json:"usage"`
	Key   string `json:"key"`
}

func (se *secureElement) restore() error {
	data, err := os.ReadFile(se.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pinpademu: key file: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return fmt.Errorf("pinpademu: key file %s: %w", se.file, err)
	}
	for _, s := range kf.Slots {
		k, err := hex.DecodeString(s.Key)
		if err != nil || s.Slot < 1 || s.Slot > maxSlot || s.Usage < usageKEK || s.Usage > usageTDK {
			return fmt.Errorf("pinpademu: key file %s: bad slot %d", se.file, s.Slot)
		}
		if _, err := tdes(k); err != nil {
			return fmt.Errorf("pinpademu: key file %s: slot %d: %w", se.file, s.Slot, err)
		}
		se.slots[s.Slot] = &keySlot{usage: s.Usage, key: k}
	}
	return nil
}

// persist replaces the key file atomically (temporary file, fsync, rename, fsync of the
// directory): after a power cut the file holds the old key set or the new one, never a mix.
func (se *secureElement) persist() error {
	if se.file == "" {
		return nil
	}
	var kf keyFile
	for i, s := range se.slots {
		if s != nil && i != transportSlot {
			kf.Slots = append(kf.Slots, keyFileSlot{Slot: i, Usage: s.usage, Key: hex.EncodeToString(s.key)})
		}
	}
	data, err := json.Marshal(kf)
	if err != nil {
		return err
	}
	dir := filepath.Dir(se.file)
	f, err := os.CreateTemp(dir, ".pinpad-keys-*") // created 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, se.file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
