package pinpademu

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
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

// Algorithm bytes of a slot's key, as TR-31 headers write them.
const (
	algTDES = 'T'
	algAES  = 'A'
)

type keySlot struct {
	usage byte
	aes   bool // an AES transport key or KEK; every other key is TDES
	key   []byte
}

func (k *keySlot) alg() byte {
	if k.aes {
		return algAES
	}
	return algTDES
}

// secureElement is the software stand-in for the pad's tamper-responsive key store. Clear
// keys exist only here; what leaves is a check value or an encrypted PIN block.
type secureElement struct {
	mu    sync.Mutex
	slots [maxSlot + 1]*keySlot
	file  string // where loaded keys persist; "" keeps them in memory only
}

func newSecureElement(transport []byte, transportAES bool, file string) (*secureElement, error) {
	if err := checkKey(transport, transportAES); err != nil {
		return nil, fmt.Errorf("pinpademu: transport key: %w", err)
	}
	se := &secureElement{file: file}
	se.slots[transportSlot] = &keySlot{usage: usageTransport, aes: transportAES, key: bytes.Clone(transport)}
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

// checkKey checks a key's length: 8, 16 or 24 bytes for TDES, 16, 24 or 32 for AES.
func checkKey(key []byte, isAES bool) error {
	if isAES {
		if _, err := aes.NewCipher(key); err != nil {
			return fmt.Errorf("AES key of %d bytes", len(key))
		}
		return nil
	}
	_, err := tdes(key)
	return err
}

// slotKCV is the 3-byte check value of a slot's key: E(K, 0…0) for TDES, the first 3 bytes
// of the 5-byte AES-CMAC check value (ANSI X9.24-1) for AES.
func slotKCV(k *keySlot) ([3]byte, error) {
	var out [3]byte
	if k.aes {
		cv, err := kcv.AES(k.key, 5)
		if err != nil {
			return out, err
		}
		copy(out[:], cv)
		return out, nil
	}
	cv, err := checkValue(k.key)
	copy(out[:], cv[:3])
	return out, err
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
	stBadKeyBlock      status = 0x08
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
	// An AES key unwraps TR-31 key blocks only (LOAD KEY BLOCK), never TDES-ECB cryptograms.
	if p.aes {
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
	if st := se.store(slot, &keySlot{usage: usage, key: clearKey}); st != stOK {
		clear(clearKey)
		return out, st
	}
	copy(out[:], cv[:3])
	return out, stOK
}

// store puts a key in a slot and persists the key set; on failure the slot keeps its old key.
// se.mu is held.
func (se *secureElement) store(slot int, k *keySlot) status {
	old := se.slots[slot]
	se.slots[slot] = k
	if err := se.persist(); err != nil {
		se.slots[slot] = old
		return stDeviceError
	}
	if old != nil {
		clear(old.key)
	}
	return stOK
}

// keyBlockResult is what LOAD KEY BLOCK reports.
type keyBlockResult struct {
	usage byte
	alg   byte
	kcv   [3]byte
}

// loadBlock unwraps a TR-31 key block with the key in parent (the KBPK) and stores its key
// in slot, with the usage its header gives. On any refusal the slot keeps what it had.
func (se *secureElement) loadBlock(slot, parent int, block string) (keyBlockResult, status) {
	var out keyBlockResult
	if slot < 1 || slot > maxSlot || parent < 0 || parent > maxSlot {
		return out, stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	p := se.slots[parent]
	switch {
	case p == nil:
		return out, stNoKey
	case p.usage != usageTransport && p.usage != usageKEK:
		// Only the transport key and KEKs unwrap anything.
		return out, stWrongUsage
	}
	h, key, err := unwrapKeyBlock(p.key, block)
	if err != nil {
		return out, stBadKeyBlock
	}
	usage, isAES, st := keyBlockPolicy(h, p.usage)
	if st == stOK && isAES && !p.aes {
		st = stWrongUsage // an AES key is never delivered under a (weaker) TDES key
	}
	if st == stOK && checkKey(key, isAES) != nil || st == stOK && !isAES && len(key) == 8 {
		st = stBadKeyBlock // TR-31 keys are double or triple length TDES, or AES
	}
	if st != stOK {
		clear(key)
		return out, st
	}
	k := &keySlot{usage: usage, aes: isAES, key: key}
	cv, err := slotKCV(k)
	if err != nil {
		clear(key)
		return out, stDeviceError
	}
	if st := se.store(slot, k); st != stOK {
		clear(key)
		return out, st
	}
	return keyBlockResult{usage: usage, alg: k.alg(), kcv: cv}, stOK
}

// keyBlockPolicy maps a TR-31 header to a slot usage, or refuses it (WRONG_USAGE) under a
// parent of parentUsage. docs/pinpad-protocol.md, LOAD KEY BLOCK, has the table.
func keyBlockPolicy(h blockHeader, parentUsage byte) (usage byte, isAES bool, st status) {
	var modes string
	switch h.usage {
	case "K0", "K1":
		usage, modes = usageKEK, "BDN" // the pad only ever unwraps with a KEK
	case "P0":
		usage, modes = usagePIK, "EBN" // the pad only ever encrypts PIN blocks
	case "M0", "M1", "M3":
		usage, modes = usageMAK, "CGN" // the pad generates MACs
	case "D0":
		usage, modes = usageTDK, "BEDN"
	default:
		return 0, false, stWrongUsage
	}
	// The hierarchy of LOAD KEY: a KEK under the transport key, a working key under a KEK.
	if usage == usageKEK && parentUsage != usageTransport || usage != usageKEK && parentUsage != usageKEK {
		return 0, false, stWrongUsage
	}
	switch {
	case h.algorithm == algAES && usage == usageKEK:
		isAES = true
	case h.algorithm != algTDES:
		return 0, false, stWrongUsage
	}
	if !strings.ContainsRune(modes, rune(h.modeOfUse)) {
		return 0, false, stWrongUsage
	}
	// Exportability (E, N, S) is accepted as it comes: the pad never exports a key.
	return usage, isAES, stOK
}

// mac computes a MAC of data with the MAK in slot.
func (se *secureElement) mac(slot int, alg byte, data []byte) ([]byte, status) {
	if slot < 1 || slot > maxSlot || alg < macX99 || alg > macUnionPayECB || len(data) < 1 || len(data) > maxMACData {
		return nil, stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	s := se.slots[slot]
	switch {
	case s == nil:
		return nil, stNoKey
	case s.usage != usageMAK:
		return nil, stWrongUsage
	}
	var out []byte
	var err error
	switch alg {
	case macX99:
		out, err = mac.X99(s.key, data)
	case macX919:
		out, err = mac.X919(s.key, data)
	case macUnionPayECB:
		out, err = mac.UnionPayECB(s.key, data)
	}
	if errors.Is(err, mac.ErrKeyLength) {
		// X9.9 takes a single-length MAK, X9.19 a double or triple length one.
		return nil, stWrongUsage
	}
	if err != nil {
		return nil, stDeviceError
	}
	return out, stOK
}

// MAC algorithms as on the wire, and the data limit.
const (
	macX99         = 0x01
	macX919        = 0x02
	macUnionPayECB = 0x03
	maxMACData     = 900
)

type keyInfo struct {
	usage, alg byte
	keyLen     int
	kcv        [3]byte
}

func (se *secureElement) kcv(slot int) (keyInfo, status) {
	if slot < 0 || slot > maxSlot {
		return keyInfo{}, stBadParameter
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	s := se.slots[slot]
	if s == nil {
		return keyInfo{}, stNoKey
	}
	cv, err := slotKCV(s)
	if err != nil {
		return keyInfo{}, stDeviceError
	}
	return keyInfo{usage: s.usage, alg: s.alg(), keyLen: len(s.key), kcv: cv}, stOK
}

// injectTransport installs a factory transport key (8, 16 or 24 bytes TDES; 16, 24 or 32
// AES). The transport key is not written to the key file: it comes with the emulator's
// options, as a real pad's comes from the factory.
func (se *secureElement) injectTransport(key []byte, isAES bool) error {
	if err := checkKey(key, isAES); err != nil {
		return err
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	if old := se.slots[transportSlot]; old != nil {
		clear(old.key)
	}
	se.slots[transportSlot] = &keySlot{usage: usageTransport, aes: isAES, key: bytes.Clone(key)}
	return nil
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
	slot, usage, alg byte
	keyLen           int
}

func (se *secureElement) info() []slotInfo {
	se.mu.Lock()
	defer se.mu.Unlock()
	var out []slotInfo
	for i, s := range se.slots {
		if s != nil {
			out = append(out, slotInfo{slot: byte(i), usage: s.usage, alg: s.alg(), keyLen: len(s.key)})
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
	Alg   string `json:"alg,omitempty"` // "A" for AES; absent for TDES (files of older emulators)
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
		isAES := s.Alg == "A"
		if err != nil || s.Slot < 1 || s.Slot > maxSlot || s.Usage < usageKEK || s.Usage > usageTDK ||
			s.Alg != "" && !isAES || isAES && s.Usage != usageKEK {
			return fmt.Errorf("pinpademu: key file %s: bad slot %d", se.file, s.Slot)
		}
		if err := checkKey(k, isAES); err != nil {
			return fmt.Errorf("pinpademu: key file %s: slot %d: %w", se.file, s.Slot, err)
		}
		se.slots[s.Slot] = &keySlot{usage: s.Usage, aes: isAES, key: k}
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
			fs := keyFileSlot{Slot: i, Usage: s.usage, Key: hex.EncodeToString(s.key)}
			if s.aes {
				fs.Alg = "A"
			}
			kf.Slots = append(kf.Slots, fs)
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
