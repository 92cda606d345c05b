package pinpad

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Command codes; an answer carries code|0x80, an event payload starts with evtCode.
const (
	cmdOpen     = 0x01
	cmdClose    = 0x02
	cmdInfo     = 0x03
	cmdDisplay  = 0x10
	cmdBeep     = 0x11
	cmdGetPIN   = 0x20
	cmdLoadKey  = 0x30
	cmdKCV      = 0x31
	cmdErase    = 0x32
	cmdLoadTR31 = 0x33
	cmdMAC      = 0x34

	answerBit = 0x80
	evtCode   = 0xC0

	evtKey    = 0x01
	evtTamper = 0x02
)

var cmdNames = map[byte]string{
	cmdOpen: "OPEN", cmdClose: "CLOSE", cmdInfo: "INFO", cmdDisplay: "DISPLAY", cmdBeep: "BEEP",
	cmdGetPIN: "GET PIN", cmdLoadKey: "LOAD KEY", cmdKCV: "KEY CHECK VALUE", cmdErase: "ERASE",
	cmdLoadTR31: "LOAD KEY BLOCK", cmdMAC: "MAC",
}

func cmdName(c byte) string {
	if n, ok := cmdNames[c]; ok {
		return n
	}
	return fmt.Sprintf("command %#02x", c)
}

// Limits the pad enforces; the driver checks them first so a bad call never reaches the line.
const (
	// TransportSlot holds the factory transport key; LOAD KEY cannot write it.
	TransportSlot = 0
	// MaxSlot is the highest key slot.
	MaxSlot = 15
	// LineChars is the width of the pad's display, in characters.
	LineChars = 20
	// MinPINLen and MaxPINLen bound PIN lengths (ISO 9564 format 0).
	MinPINLen = 4
	MaxPINLen = 12

	// MaxMACData bounds the data of one MAC command.
	MaxMACData = 900
	// MaxKeyBlock bounds a TR-31 key block: what fits in a frame after the command's fields.
	MaxKeyBlock = MaxPayload - 5

	maxLineBytes = 4 * LineChars

	// infoLayout1 asks INFO and KEY CHECK VALUE for the layout with the algorithm byte.
	infoLayout1 = 0x01
)

// Algorithm bytes of a slot's key, as TR-31 writes them.
const (
	algTDES = 'T'
	algAES  = 'A'
)

// Usage is what a key slot's key may be used for.
type Usage byte

// Key usages.
const (
	UsageTransport Usage = 0x00 // factory transport key: wraps KEKs
	UsageKEK       Usage = 0x01 // key-encrypting key (terminal master key): wraps working keys
	UsagePIK       Usage = 0x02 // PIN encryption key
	UsageMAK       Usage = 0x03 // MAC key
	UsageTDK       Usage = 0x04 // data encryption key
)

func (u Usage) String() string {
	switch u {
	case UsageTransport:
		return "transport"
	case UsageKEK:
		return "KEK"
	case UsagePIK:
		return "PIK"
	case UsageMAK:
		return "MAK"
	case UsageTDK:
		return "TDK"
	}
	return fmt.Sprintf("usage(%#02x)", byte(u))
}

// KCV is a key check value: the first three bytes of the key encrypting eight zero bytes.
// It identifies a key without revealing it, so it may be logged and reported.
type KCV [3]byte

func (k KCV) String() string { return strings.ToUpper(hex.EncodeToString(k[:])) }

// SlotInfo describes a loaded key slot.
type SlotInfo struct {
	Slot  int
	Usage Usage
	// AES: the key is AES (a transport key or a KEK loaded from a TR-31 key block);
	// otherwise TDES. Pads that predate the algorithm byte report TDES.
	AES    bool
	KeyLen int // bytes: 8, 16 or 24 for TDES; 16, 24 or 32 for AES
}

// Info is the pad's identity and its loaded key slots.
type Info struct {
	Model, Serial, Firmware string
	Slots                   []SlotInfo
}

// PINRequest asks for a PIN entry.
type PINRequest struct {
	// PAN is the card number (13..19 digits) bound into the ISO 9564 format 0 block.
	PAN string
	// Slot holds the PIN encryption key.
	Slot int
	// MinLen and MaxLen bound the PIN's length; zero means 4 and 12.
	MinLen, MaxLen int
	// Timeout for the cardholder, whole seconds from 1 to 255; zero means 30 s.
	Timeout time.Duration
	// Prompt is shown on the first line (at most 20 characters); empty leaves the pad's own.
	Prompt string
	// AllowBypass accepts the confirm key with no digits (ErrBypassed) instead of refusing it
	// (ErrBypassNotAllowed).
	AllowBypass bool
}

// String masks the PAN: it is the only form a PINRequest may take in a log.
func (r PINRequest) String() string {
	return fmt.Sprintf("PINRequest{PAN:%s slot:%d len:%d..%d timeout:%s bypass:%t}",
		MaskPAN(r.PAN), r.Slot, r.MinLen, r.MaxLen, r.Timeout, r.AllowBypass)
}

// MaskPAN keeps the first six and the last four digits.
func MaskPAN(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}

// PINBlock is an ISO 9564 format 0 PIN block encrypted under the pad's PIN key. It never
// prints: String, GoString and every fmt verb give a placeholder.
type PINBlock [8]byte

func (PINBlock) String() string   { return "PINBlock(redacted)" }
func (PINBlock) GoString() string { return "pinpad.PINBlock(redacted)" }

// Format keeps %x, %v, %#v and friends from printing the bytes.
func (b PINBlock) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(b.String())) }

// KeyLoad is a key for LOAD KEY, encrypted under the key of its parent slot.
type KeyLoad struct {
	// Slot to write, 1..15.
	Slot  int
	Usage Usage
	// Parent holds the key that encrypts this one: TransportSlot for a KEK, a KEK's slot for
	// a working key.
	Parent int
	// Encrypted is the key (8, 16 or 24 bytes) encrypted with TDES-ECB under the parent key.
	Encrypted []byte
	// CheckValue is the first 3 (ANSI) or 4 (UnionPay) bytes of the clear key encrypting
	// eight zero bytes; the pad refuses the key when it does not match.
	CheckValue []byte
}

// String leaves out the key: even encrypted keys stay out of logs.
func (k KeyLoad) String() string {
	return fmt.Sprintf("KeyLoad{slot:%d usage:%s parent:%d len:%d}", k.Slot, k.Usage, k.Parent, len(k.Encrypted))
}

// EraseScope says what ERASE zeroises.
type EraseScope byte

const (
	// EraseLoaded zeroises every loaded key (KEKs and working keys); the transport key stays.
	EraseLoaded EraseScope = 0x00
	// EraseAll zeroises the transport key too: the pad needs a factory key injection again.
	EraseAll EraseScope = 0x01
)

// Key is a function key of the pad.
type Key byte

// Function keys.
const (
	KeyConfirm Key = 0x01
	KeyCancel  Key = 0x02
	KeyClear   Key = 0x03
)

func (k Key) String() string {
	switch k {
	case KeyConfirm:
		return "confirm"
	case KeyCancel:
		return "cancel"
	case KeyClear:
		return "clear"
	}
	return fmt.Sprintf("key(%#02x)", byte(k))
}

// EventKind is what an unsolicited event reports.
type EventKind byte

const (
	// EventKey: a function key was pressed outside PIN entry. Digit keys are never reported.
	EventKey EventKind = evtKey
	// EventTamper: the pad detected tampering and zeroised its keys.
	EventTamper EventKind = evtTamper
)

// Event is an unsolicited message from the pad.
type Event struct {
	Kind EventKind
	Key  Key // for EventKey
}

func (e Event) String() string {
	switch e.Kind {
	case EventKey:
		return "key " + e.Key.String()
	case EventTamper:
		return "tamper"
	}
	return fmt.Sprintf("event(%#02x)", byte(e.Kind))
}

func parseEvent(p []byte) (Event, error) {
	if len(p) < 2 || p[0] != evtCode {
		return Event{}, fmt.Errorf("%w: malformed event", ErrProtocol)
	}
	switch p[1] {
	case evtKey:
		if len(p) != 3 {
			return Event{}, fmt.Errorf("%w: key event of %d bytes", ErrProtocol, len(p))
		}
		return Event{Kind: EventKey, Key: Key(p[2])}, nil
	case evtTamper:
		return Event{Kind: EventTamper}, nil
	}
	// Unknown event kinds are passed on: a newer pad may report more.
	return Event{Kind: EventKind(p[1])}, nil
}

func appendText(dst []byte, s string, what string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: %s is not UTF-8", ErrBadParameter, what)
	}
	if utf8.RuneCountInString(s) > LineChars || len(s) > maxLineBytes {
		return nil, fmt.Errorf("%w: %s longer than %d characters", ErrBadParameter, what, LineChars)
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...), nil
}

func encodeDisplay(line1, line2 string) ([]byte, error) {
	p, err := appendText([]byte{cmdDisplay}, line1, "line 1")
	if err != nil {
		return nil, err
	}
	return appendText(p, line2, "line 2")
}

func encodeBeep(d time.Duration, count int) ([]byte, error) {
	ms := d.Milliseconds()
	if ms < 10 || ms > 2000 || count < 1 || count > 5 {
		return nil, fmt.Errorf("%w: beep of %s × %d (10 ms..2 s, 1..5 times)", ErrBadParameter, d, count)
	}
	return []byte{cmdBeep, byte(ms >> 8), byte(ms), byte(count)}, nil
}

func validPAN(pan string) bool {
	if len(pan) < 13 || len(pan) > 19 {
		return false
	}
	for i := range len(pan) {
		if pan[i] < '0' || pan[i] > '9' {
			return false
		}
	}
	return true
}

// withDefaults fills zero fields.
func (r PINRequest) withDefaults() PINRequest {
	if r.MinLen == 0 {
		r.MinLen = MinPINLen
	}
	if r.MaxLen == 0 {
		r.MaxLen = MaxPINLen
	}
	if r.Timeout == 0 {
		r.Timeout = 30 * time.Second
	}
	return r
}

func encodeGetPIN(r PINRequest) ([]byte, error) {
	if !validPAN(r.PAN) {
		return nil, fmt.Errorf("%w: PAN must be 13 to 19 digits", ErrBadParameter)
	}
	if r.Slot < 1 || r.Slot > MaxSlot {
		return nil, fmt.Errorf("%w: PIN key slot %d", ErrBadParameter, r.Slot)
	}
	if r.MinLen < MinPINLen || r.MaxLen > MaxPINLen || r.MinLen > r.MaxLen {
		return nil, fmt.Errorf("%w: PIN length %d..%d (allowed %d..%d)", ErrBadParameter, r.MinLen, r.MaxLen, MinPINLen, MaxPINLen)
	}
	secs := r.Timeout.Round(time.Second) / time.Second
	if secs < 1 || secs > 255 {
		return nil, fmt.Errorf("%w: PIN timeout %s (1..255 s)", ErrBadParameter, r.Timeout)
	}
	var flags byte
	if r.AllowBypass {
		flags |= 0x01
	}
	p := []byte{cmdGetPIN, byte(r.Slot), byte(r.MinLen), byte(r.MaxLen), byte(secs), flags, byte(len(r.PAN))}
	p = append(p, r.PAN...)
	return appendText(p, r.Prompt, "prompt")
}

func encodeLoadKey(k KeyLoad) ([]byte, error) {
	if k.Slot < 1 || k.Slot > MaxSlot || k.Parent < 0 || k.Parent > MaxSlot {
		return nil, fmt.Errorf("%w: slot %d, parent %d", ErrBadParameter, k.Slot, k.Parent)
	}
	if n := len(k.Encrypted); n != 8 && n != 16 && n != 24 {
		return nil, fmt.Errorf("%w: key of %d bytes", ErrBadParameter, n)
	}
	if n := len(k.CheckValue); n != 3 && n != 4 {
		return nil, fmt.Errorf("%w: check value of %d bytes", ErrBadParameter, n)
	}
	switch k.Usage {
	case UsageKEK, UsagePIK, UsageMAK, UsageTDK:
	default:
		return nil, fmt.Errorf("%w: usage %s cannot be loaded", ErrBadParameter, k.Usage)
	}
	p := []byte{cmdLoadKey, byte(k.Slot), byte(k.Usage), byte(k.Parent), byte(len(k.Encrypted))}
	p = append(p, k.Encrypted...)
	p = append(p, byte(len(k.CheckValue)))
	return append(p, k.CheckValue...), nil
}

// cursor reads an answer's data with bounds checks; the first shortfall sticks.
type cursor struct {
	p   []byte
	err error
}

func (c *cursor) byte() byte {
	if c.err != nil || len(c.p) < 1 {
		c.fail()
		return 0
	}
	b := c.p[0]
	c.p = c.p[1:]
	return b
}

func (c *cursor) bytes(n int) []byte {
	if c.err != nil || len(c.p) < n {
		c.fail()
		return nil
	}
	b := c.p[:n]
	c.p = c.p[n:]
	return b
}

func (c *cursor) text() string { return string(c.bytes(int(c.byte()))) }

func (c *cursor) fail() {
	if c.err == nil {
		c.err = fmt.Errorf("%w: answer too short", ErrProtocol)
	}
}

func (c *cursor) end() error {
	if c.err == nil && len(c.p) != 0 {
		c.err = fmt.Errorf("%w: %d stray bytes at the end of the answer", ErrProtocol, len(c.p))
	}
	return c.err
}

// decodeInfo reads INFO's answer; withAlg is the layout 01 answer (slot, usage, algorithm,
// key length per slot), otherwise the original one (slot, usage, key length).
func decodeInfo(data []byte, withAlg bool) (Info, error) {
	c := &cursor{p: data}
	in := Info{Model: c.text(), Serial: c.text(), Firmware: c.text()}
	n := int(c.byte())
	for range n {
		s := SlotInfo{Slot: int(c.byte()), Usage: Usage(c.byte())}
		if withAlg {
			s.AES = c.alg()
		}
		s.KeyLen = int(c.byte())
		if c.err == nil {
			in.Slots = append(in.Slots, s)
		}
	}
	return in, c.end()
}

// alg reads an algorithm byte: true for AES, false for TDES, an error for anything else.
func (c *cursor) alg() bool {
	switch b := c.byte(); {
	case c.err != nil:
		return false
	case b == algAES:
		return true
	case b != algTDES:
		c.err = fmt.Errorf("%w: algorithm %#02x", ErrProtocol, b)
	}
	return false
}

// decodeKeyInfo reads KEY CHECK VALUE's layout 01 answer: usage, algorithm, key length, KCV.
func decodeKeyInfo(slot int, data []byte) (SlotInfo, KCV, error) {
	c := &cursor{p: data}
	s := SlotInfo{Slot: slot, Usage: Usage(c.byte()), AES: c.alg(), KeyLen: int(c.byte())}
	var kcv KCV
	copy(kcv[:], c.bytes(len(kcv)))
	if err := c.end(); err != nil {
		return SlotInfo{}, KCV{}, err
	}
	return s, kcv, nil
}

// MACAlgorithm is the MAC the pad computes with a MAK (MAC command).
type MACAlgorithm byte

// MAC algorithms.
const (
	// MACX99 is ANSI X9.9 (ISO/IEC 9797-1 MAC algorithm 1 with DES): a single-length MAK.
	MACX99 MACAlgorithm = 0x01
	// MACX919 is ANSI X9.19 (ISO/IEC 9797-1 MAC algorithm 3): a double or triple length MAK.
	MACX919 MACAlgorithm = 0x02
	// MACUnionPayECB is the UnionPay POS "ECB" MAC; the answer is 8 ASCII hex characters.
	MACUnionPayECB MACAlgorithm = 0x03
)

func (a MACAlgorithm) String() string {
	switch a {
	case MACX99:
		return "X9.9"
	case MACX919:
		return "X9.19"
	case MACUnionPayECB:
		return "UnionPay ECB"
	}
	return fmt.Sprintf("mac(%#02x)", byte(a))
}

func encodeMAC(slot int, alg MACAlgorithm, data []byte) ([]byte, error) {
	if slot < 1 || slot > MaxSlot {
		return nil, fmt.Errorf("%w: MAC key slot %d", ErrBadParameter, slot)
	}
	switch alg {
	case MACX99, MACX919, MACUnionPayECB:
	default:
		return nil, fmt.Errorf("%w: MAC algorithm %s", ErrBadParameter, alg)
	}
	if len(data) < 1 || len(data) > MaxMACData {
		return nil, fmt.Errorf("%w: MAC data of %d bytes (1..%d)", ErrBadParameter, len(data), MaxMACData)
	}
	p := make([]byte, 0, 5+len(data))
	p = append(p, cmdMAC, byte(slot), byte(alg), byte(len(data)>>8), byte(len(data)))
	return append(p, data...), nil
}

// KeyBlockResult is what LOAD KEY BLOCK reports of the key now in the slot.
type KeyBlockResult struct {
	Usage Usage
	// AES: the key is an AES KEK; otherwise TDES.
	AES bool
	// KCV: for TDES the first 3 bytes of E(K, 0…0); for AES the first 3 bytes of the
	// 5-byte AES-CMAC check value (CMAC of a zero block).
	KCV KCV
}

func encodeLoadKeyBlock(slot, parent int, block string) ([]byte, error) {
	if slot < 1 || slot > MaxSlot || parent < 0 || parent > MaxSlot {
		return nil, fmt.Errorf("%w: slot %d, parent %d", ErrBadParameter, slot, parent)
	}
	if len(block) < 1 || len(block) > MaxKeyBlock {
		return nil, fmt.Errorf("%w: key block of %d bytes (1..%d)", ErrBadParameter, len(block), MaxKeyBlock)
	}
	for i := range len(block) {
		if block[i] < 0x20 || block[i] > 0x7E {
			return nil, fmt.Errorf("%w: key block is not printable ASCII", ErrBadParameter)
		}
	}
	p := make([]byte, 0, 5+len(block))
	p = append(p, cmdLoadTR31, byte(slot), byte(parent), byte(len(block)>>8), byte(len(block)))
	return append(p, block...), nil
}

func decodeKeyBlockResult(data []byte) (KeyBlockResult, error) {
	c := &cursor{p: data}
	r := KeyBlockResult{Usage: Usage(c.byte()), AES: c.alg()}
	copy(r.KCV[:], c.bytes(len(r.KCV)))
	if err := c.end(); err != nil {
		return KeyBlockResult{}, err
	}
	return r, nil
}
