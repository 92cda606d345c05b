package cardemu

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/des"
	"fmt"
	"sync"

	"github.com/posagent/posagent/drivers/emv"
)

// ARQC is the emulated cards' cryptogram: a triple-DES CBC-MAC (ISO 9797-1 MAC algorithm 1,
// padding method 2, zero IV, key K1 K2 K1) under the card's 16-byte test key over the data
// the terminal sent (CDOL1 data, or the PDOL data for a contactless card answering in GPO)
// followed by the ATC. It is deterministic so tests can check it, and it is NOT an issuer
// algorithm: real cards derive a session key from an issuer master key per ATC
// (EMV Book 2, A1.3), which a test host has no business imitating.
func ARQC(key, data []byte, atc uint16) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("cardemu: ARQC key of %d bytes", len(key))
	}
	k := append(append([]byte(nil), key...), key[:8]...)
	block, err := des.NewTripleDESCipher(k)
	if err != nil {
		return nil, err
	}
	msg := append(append([]byte(nil), data...), byte(atc>>8), byte(atc), 0x80)
	for len(msg)%8 != 0 {
		msg = append(msg, 0)
	}
	out := make([]byte, len(msg))
	cipher.NewCBCEncrypter(block, make([]byte, 8)).CryptBlocks(out, msg)
	return out[len(out)-8:], nil
}

// counter is a card's application transaction counter: it survives from one transaction to
// the next, as on a real card.
type counter struct {
	mu  sync.Mutex
	atc uint16
}

// session is one power-on of a card on an interface: what is selected and how far the
// transaction went.
type session struct {
	c           *card
	contactless bool
	sel         int // selection: selNone, selPSE, selPPSE, or an application index ≥ 0
	gpoDone     bool
	acDone      bool
	pending     []byte // T=0: response data waiting for GET RESPONSE
}

const (
	selNone = -1 - iota
	selPSE
	selPPSE
)

var (
	pseName  = []byte("1PAY.SYS.DDF01")
	ppseName = []byte("2PAY.SYS.DDF01")
)

func newSession(c *card, contactless bool) *session {
	return &session{c: c, contactless: contactless, sel: selNone}
}

// Chip is a test card's chip powered on outside any reader: an emv.Transport for tests that
// want EMV without a serial line.
type Chip struct {
	mu sync.Mutex
	s  *session
}

// PowerOn powers a card's chip on the contact or the contactless interface.
func (cs *CardSet) PowerOn(name string, contactless bool) (*Chip, error) {
	c, err := cs.card(name)
	if err != nil {
		return nil, err
	}
	if contactless && !c.cl || !contactless && !c.contact {
		return nil, fmt.Errorf("cardemu: card %q has no such interface", name)
	}
	return &Chip{s: newSession(c, contactless)}, nil
}

// Transmit implements emv.Transport.
func (ch *Chip) Transmit(ctx context.Context, apdu []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.s.apdu(apdu), nil
}

func sw(data []byte, sw uint16) []byte { return append(data, byte(sw>>8), byte(sw)) }

// apdu answers one command APDU with a response APDU.
func (s *session) apdu(cmd []byte) []byte {
	if len(cmd) < 4 {
		return sw(nil, 0x6700)
	}
	cla, ins, p1, p2 := cmd[0], cmd[1], cmd[2], cmd[3]
	var data []byte
	le, hasLe := 0, false
	switch body := cmd[4:]; {
	case len(body) == 0:
	case len(body) == 1:
		le, hasLe = int(body[0]), true
	default:
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
		case 2 + lc:
			le, hasLe = int(body[1+lc]), true
		default:
			return sw(nil, 0x6700)
		}
		data = body[1 : 1+lc]
	}
	if le == 0 && hasLe {
		le = 256
	}
	if cla != 0x00 && cla != 0x80 {
		return sw(nil, 0x6E00)
	}
	t0 := s.c.spec.T0 && !s.contactless
	if ins != 0xC0 {
		s.pending = nil
	}
	var resp []byte
	var status uint16
	case4 := false
	switch {
	case cla == 0x00 && ins == 0xA4:
		resp, status = s.selectFile(p1, p2, data)
		case4 = true
	case cla == 0x00 && ins == 0xB2:
		resp, status = s.readRecord(p1, p2)
	case cla == 0x80 && ins == 0xA8:
		resp, status = s.gpo(data)
		case4 = true
	case cla == 0x80 && ins == 0xAE:
		resp, status = s.generateAC(p1, data)
		case4 = true
	case cla == 0x80 && ins == 0xCA:
		resp, status = s.getData(p1, p2)
	case cla == 0x00 && ins == 0xC0:
		if s.pending == nil {
			return sw(nil, 0x6985)
		}
		resp, s.pending = s.pending, nil
		if le < len(resp) {
			s.pending = resp[le:]
			return sw(append([]byte(nil), resp[:le]...), 0x6100|uint16(min(len(s.pending), 255)))
		}
		return sw(resp, 0x9000)
	default:
		return sw(nil, 0x6D00)
	}
	if status != 0x9000 || len(resp) == 0 {
		return sw(resp, status)
	}
	if t0 {
		// T=0 carries no Le with data: the card says how much it has and waits for GET
		// RESPONSE; a case 2 command with the wrong Le is told the right one.
		if case4 {
			s.pending = resp
			return sw(nil, 0x6100|uint16(len(resp)&0xFF))
		}
		if hasLe && le != len(resp) {
			return sw(nil, 0x6C00|uint16(len(resp)&0xFF))
		}
	}
	return sw(resp, status)
}

func (s *session) selectFile(p1, p2 byte, name []byte) ([]byte, uint16) {
	if p1 != 0x04 || p2&^0x02 != 0 {
		return nil, 0x6A86
	}
	s.sel, s.gpoDone, s.acDone = selNone, false, false
	if s.c.selectSW != 0 {
		return nil, s.c.selectSW
	}
	switch {
	case bytes.Equal(name, pseName):
		if s.contactless {
			return nil, 0x6A82
		}
		s.sel = selPSE
		prop := emv.AppendTLV(nil, emv.TagSFI, []byte{1})
		prop = emv.AppendTLV(prop, 0x5F2D, []byte("zhen"))
		return fci(name, prop), 0x9000
	case bytes.Equal(name, ppseName):
		if !s.contactless {
			return nil, 0x6A82
		}
		s.sel = selPPSE
		var dir []byte
		for _, a := range s.c.apps {
			dir = emv.AppendTLV(dir, emv.TagDirEntry, a.dirEntry())
		}
		return fci(name, emv.AppendTLV(nil, emv.TagFCIIssuerData, dir)), 0x9000
	}
	for i, a := range s.c.apps {
		// Partial selection: the terminal may name a prefix of the AID.
		if len(name) >= 5 && bytes.HasPrefix(a.aid, name) {
			s.sel = i
			prop := emv.AppendTLV(nil, emv.TagAppLabel, a.label)
			if a.priority != 0 {
				prop = emv.AppendTLV(prop, emv.TagPriority, []byte{a.priority})
			}
			if pdol := a.pdolFor(s.contactless); len(pdol) > 0 {
				prop = emv.AppendTLV(prop, emv.TagPDOL, pdol)
			}
			prop = emv.AppendTLV(prop, 0x5F2D, []byte("zhen"))
			return fci(a.aid, prop), 0x9000
		}
	}
	return nil, 0x6A82
}

func fci(df, prop []byte) []byte {
	body := emv.AppendTLV(nil, emv.TagDFName, df)
	body = emv.AppendTLV(body, emv.TagFCIProprietary, prop)
	return emv.AppendTLV(nil, emv.TagFCI, body)
}

func (a *app) dirEntry() []byte {
	e := emv.AppendTLV(nil, emv.TagAID, a.aid)
	e = emv.AppendTLV(e, emv.TagAppLabel, a.label)
	if a.priority != 0 {
		e = emv.AppendTLV(e, emv.TagPriority, []byte{a.priority})
	}
	return e
}

func (a *app) pdolFor(contactless bool) []byte {
	if contactless {
		return a.clPDOL
	}
	return a.pdol
}

func (s *session) readRecord(rec, p2 byte) ([]byte, uint16) {
	if p2&7 != 4 {
		return nil, 0x6A86
	}
	sfi := int(p2 >> 3)
	switch {
	case s.sel == selPSE:
		if sfi != 1 || rec == 0 || int(rec) > len(s.c.apps) {
			return nil, 0x6A83
		}
		a := s.c.apps[rec-1]
		return emv.AppendTLV(nil, emv.TagRecord, emv.AppendTLV(nil, emv.TagDirEntry, a.dirEntry())), 0x9000
	case s.sel >= 0:
		r, ok := s.c.apps[s.sel].records[sfi<<8|int(rec)]
		if !ok {
			return nil, 0x6A83
		}
		return r, 0x9000
	}
	return nil, 0x6985
}

func (s *session) gpo(data []byte) ([]byte, uint16) {
	if s.sel < 0 || s.gpoDone {
		return nil, 0x6985
	}
	a := &s.c.apps[s.sel]
	want := a.pdolLen
	if s.contactless {
		want = a.clLen
	}
	objs, err := emv.Parse(data)
	if err != nil || len(objs) != 1 || objs[0].Tag != emv.TagCommandTemplate || len(objs[0].Value) != want {
		return nil, 0x6700
	}
	s.gpoDone = true
	atc := s.c.atc.next()
	if !s.contactless {
		if s.c.spec.ResponseFormat == 1 {
			return emv.AppendTLV(nil, emv.TagResponseFormat1, append(append([]byte(nil), a.aip...), a.afl...)), 0x9000
		}
		body := emv.AppendTLV(nil, emv.TagAIP, a.aip)
		body = emv.AppendTLV(body, emv.TagAFL, a.afl)
		return emv.AppendTLV(nil, emv.TagResponseFormat2, body), 0x9000
	}
	// Contactless (qPBOC / qVSDC style): the cryptogram comes with the processing options,
	// computed over the PDOL data, so the card may leave the field at once.
	ac, err := ARQC(s.c.key, objs[0].Value, atc)
	if err != nil {
		return nil, 0x6F00
	}
	s.acDone = true
	body := emv.AppendTLV(nil, emv.TagAIP, a.aip)
	body = emv.AppendTLV(body, emv.TagAFL, a.afl)
	body = emv.AppendTLV(body, emv.TagTrack2Equivalent, a.track2Bytes)
	if a.panSeq != nil {
		body = emv.AppendTLV(body, emv.TagPANSequence, a.panSeq)
	}
	body = emv.AppendTLV(body, emv.TagIAD, a.iad)
	body = emv.AppendTLV(body, emv.TagCryptogram, ac)
	body = emv.AppendTLV(body, emv.TagCID, []byte{emv.CIDARQC})
	if !s.c.spec.OmitATC {
		body = emv.AppendTLV(body, emv.TagATC, []byte{byte(atc >> 8), byte(atc)})
	}
	return emv.AppendTLV(nil, emv.TagResponseFormat2, body), 0x9000
}

func (s *session) generateAC(p1 byte, data []byte) ([]byte, uint16) {
	if s.sel < 0 || !s.gpoDone || s.acDone {
		return nil, 0x6985
	}
	a := &s.c.apps[s.sel]
	if len(data) != a.cdol1Len {
		return nil, 0x6700
	}
	s.acDone = true
	atc := s.c.atc.current()
	// The card goes online whatever is asked, except when the terminal wants a decline.
	cid := byte(emv.CIDARQC)
	if p1&0xC0 == emv.CIDAAC {
		cid = emv.CIDAAC
	}
	ac, err := ARQC(s.c.key, data, atc)
	if err != nil {
		return nil, 0x6F00
	}
	if s.c.spec.ResponseFormat == 1 {
		v := append([]byte{cid, byte(atc >> 8), byte(atc)}, ac...)
		return emv.AppendTLV(nil, emv.TagResponseFormat1, append(v, a.iad...)), 0x9000
	}
	body := emv.AppendTLV(nil, emv.TagCID, []byte{cid})
	body = emv.AppendTLV(body, emv.TagATC, []byte{byte(atc >> 8), byte(atc)})
	body = emv.AppendTLV(body, emv.TagCryptogram, ac)
	body = emv.AppendTLV(body, emv.TagIAD, a.iad)
	return emv.AppendTLV(nil, emv.TagResponseFormat2, body), 0x9000
}

func (s *session) getData(p1, p2 byte) ([]byte, uint16) {
	switch emv.Tag(p1)<<8 | emv.Tag(p2) {
	case emv.TagATC:
		atc := s.c.atc.current()
		return emv.AppendTLV(nil, emv.TagATC, []byte{byte(atc >> 8), byte(atc)}), 0x9000
	case 0x9F17: // PIN try counter
		return emv.AppendTLV(nil, 0x9F17, []byte{3}), 0x9000
	}
	return nil, 0x6A88
}

func (c *counter) next() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atc++
	return c.atc
}

func (c *counter) current() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.atc
}
