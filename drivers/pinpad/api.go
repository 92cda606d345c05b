package pinpad

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OpenSession opens the pad's session (OPEN). Every command but INFO and CLOSE needs one.
// While it is open, a pad that restarts and loses it is opened again transparently.
func (c *Client) OpenSession(ctx context.Context) error {
	if _, err := c.do(ctx, []byte{cmdOpen}, c.opt.ResponseTimeout); err != nil {
		return err
	}
	c.session.Store(true)
	return nil
}

// CloseSession closes the pad's session (CLOSE): the pad shows its idle screen.
func (c *Client) CloseSession(ctx context.Context) error {
	c.session.Store(false)
	_, err := c.do(ctx, []byte{cmdClose}, c.opt.ResponseTimeout)
	return err
}

// Info reads the pad's identity and its loaded key slots with their algorithms (INFO, layout
// 01). A pad that predates layout 01 is asked again the original way; its keys are TDES.
func (c *Client) Info(ctx context.Context) (Info, error) {
	withAlg := true
	data, err := c.call(ctx, []byte{cmdInfo, infoLayout1}, c.opt.ResponseTimeout)
	if errors.Is(err, ErrBadParameter) {
		withAlg = false
		data, err = c.call(ctx, []byte{cmdInfo}, c.opt.ResponseTimeout)
	}
	if err != nil {
		return Info{}, err
	}
	in, err := decodeInfo(data, withAlg)
	if err != nil {
		return Info{}, fmt.Errorf("pinpad: INFO: %w", err)
	}
	return in, nil
}

// Display shows two lines of text, each at most LineChars characters (DISPLAY).
func (c *Client) Display(ctx context.Context, line1, line2 string) error {
	p, err := encodeDisplay(line1, line2)
	if err != nil {
		return fmt.Errorf("pinpad: DISPLAY: %w", err)
	}
	_, err = c.call(ctx, p, c.opt.ResponseTimeout)
	return err
}

// Beep sounds the buzzer count times (1..5) for d (10 ms..2 s) each (BEEP).
func (c *Client) Beep(ctx context.Context, d time.Duration, count int) error {
	p, err := encodeBeep(d, count)
	if err != nil {
		return fmt.Errorf("pinpad: BEEP: %w", err)
	}
	// The pad answers when it has finished beeping.
	_, err = c.call(ctx, p, c.opt.ResponseTimeout+time.Duration(count)*2*d)
	return err
}

// GetPIN has the cardholder enter a PIN and returns it as an ISO 9564 format 0 block
// encrypted under the PIN key in r.Slot; the clear PIN never leaves the pad (GET PIN).
//
// The cardholder's outcomes arrive as errors: ErrCancelled, ErrEntryTimeout,
// ErrBypassNotAllowed and, when r.AllowBypass, ErrBypassed. Abort, or the end of ctx,
// cancels the entry on the pad.
func (c *Client) GetPIN(ctx context.Context, r PINRequest) (PINBlock, error) {
	r = r.withDefaults()
	p, err := encodeGetPIN(r)
	if err != nil {
		return PINBlock{}, fmt.Errorf("pinpad: GET PIN: %w", err)
	}
	data, err := c.call(ctx, p, r.Timeout.Round(time.Second)+c.opt.ResponseTimeout)
	if err != nil {
		return PINBlock{}, err
	}
	var b PINBlock
	if len(data) != len(b) {
		return PINBlock{}, fmt.Errorf("pinpad: GET PIN: %w: PIN block of %d bytes", ErrProtocol, len(data))
	}
	copy(b[:], data)
	clear(data)
	return b, nil
}

// Abort cancels the pending command, typically a GET PIN waiting for the cardholder, which
// then returns ErrAborted. With nothing pending here it still tells the pad, which may be
// busy with a command of a previous client. It returns when the pad has confirmed.
func (c *Client) Abort(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case c.aborts <- done:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.quit:
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.quit:
		return ErrClosed
	}
}

// LoadKey writes a key, encrypted under its parent slot's key, into a slot (LOAD KEY). The
// pad decrypts it, checks k.CheckValue and refuses a mismatch (ErrKCVMismatch) keeping the
// slot's previous key. It returns the check value of the key now in the slot.
func (c *Client) LoadKey(ctx context.Context, k KeyLoad) (KCV, error) {
	p, err := encodeLoadKey(k)
	if err != nil {
		return KCV{}, fmt.Errorf("pinpad: LOAD KEY: %w", err)
	}
	data, err := c.call(ctx, p, c.opt.ResponseTimeout)
	clear(p)
	if err != nil {
		return KCV{}, err
	}
	var kcv KCV
	if len(data) != len(kcv) {
		return KCV{}, fmt.Errorf("pinpad: LOAD KEY: %w: check value of %d bytes", ErrProtocol, len(data))
	}
	copy(kcv[:], data)
	return kcv, nil
}

// KeyCheckValue reads the usage and check value of the key in a slot (KEY CHECK VALUE);
// ErrNoKey when the slot is empty.
func (c *Client) KeyCheckValue(ctx context.Context, slot int) (Usage, KCV, error) {
	if slot < 0 || slot > MaxSlot {
		return 0, KCV{}, fmt.Errorf("pinpad: KEY CHECK VALUE: %w: slot %d", ErrBadParameter, slot)
	}
	data, err := c.call(ctx, []byte{cmdKCV, byte(slot)}, c.opt.ResponseTimeout)
	if err != nil {
		return 0, KCV{}, err
	}
	var kcv KCV
	if len(data) != 2+len(kcv) {
		return 0, KCV{}, fmt.Errorf("pinpad: KEY CHECK VALUE: %w: answer of %d bytes", ErrProtocol, len(data))
	}
	copy(kcv[:], data[2:])
	return Usage(data[0]), kcv, nil
}

// KeyInfo reads the usage, algorithm, length and check value of the key in a slot (KEY
// CHECK VALUE, layout 01); ErrNoKey when the slot is empty.
func (c *Client) KeyInfo(ctx context.Context, slot int) (SlotInfo, KCV, error) {
	if slot < 0 || slot > MaxSlot {
		return SlotInfo{}, KCV{}, fmt.Errorf("pinpad: KEY CHECK VALUE: %w: slot %d", ErrBadParameter, slot)
	}
	data, err := c.call(ctx, []byte{cmdKCV, byte(slot), infoLayout1}, c.opt.ResponseTimeout)
	if err != nil {
		return SlotInfo{}, KCV{}, err
	}
	s, kcv, err := decodeKeyInfo(slot, data)
	if err != nil {
		return SlotInfo{}, KCV{}, fmt.Errorf("pinpad: KEY CHECK VALUE: %w", err)
	}
	return s, kcv, nil
}

// MAC has the pad compute a MAC of data (1..MaxMACData bytes) with the MAK in slot (MAC).
// It returns 8 bytes: the full X9.9 or X9.19 MAC (hosts usually send the first 4), or the 8
// ASCII characters of the UnionPay ECB MAC. ErrWrongUsage when the slot holds no MAK, or a
// MAK of the wrong length for alg (X9.9 takes a single-length key, X9.19 a double or triple
// length one). The data may hold card data: it is never logged.
func (c *Client) MAC(ctx context.Context, slot int, alg MACAlgorithm, data []byte) ([]byte, error) {
	p, err := encodeMAC(slot, alg, data)
	if err != nil {
		return nil, fmt.Errorf("pinpad: MAC: %w", err)
	}
	out, err := c.call(ctx, p, c.opt.ResponseTimeout)
	clear(p)
	if err != nil {
		return nil, err
	}
	if len(out) != 8 {
		return nil, fmt.Errorf("pinpad: MAC: %w: MAC of %d bytes", ErrProtocol, len(out))
	}
	return out, nil
}

// LoadKeyBlock writes the key of a TR-31 key block into slot, unwrapped by the pad with the
// key in parent, the key block protection key (LOAD KEY BLOCK). The header decides the usage:
// K0/K1 give a KEK (only under the transport slot), P0 a PIK, M0/M1/M3 a MAK and D0 a TDK
// (only under a KEK). A block that is malformed, fails its MAC or was not made under the
// parent's key is ErrBadKeyBlock; a header the pad does not allow there is ErrWrongUsage.
// On any refusal the slot keeps its previous key. The block never appears in logs or errors.
func (c *Client) LoadKeyBlock(ctx context.Context, slot, parent int, block string) (KeyBlockResult, error) {
	p, err := encodeLoadKeyBlock(slot, parent, block)
	if err != nil {
		return KeyBlockResult{}, fmt.Errorf("pinpad: LOAD KEY BLOCK: %w", err)
	}
	data, err := c.call(ctx, p, c.opt.ResponseTimeout)
	clear(p)
	if err != nil {
		return KeyBlockResult{}, err
	}
	r, err := decodeKeyBlockResult(data)
	if err != nil {
		return KeyBlockResult{}, fmt.Errorf("pinpad: LOAD KEY BLOCK: %w", err)
	}
	return r, nil
}

// Erase zeroises keys (ERASE).
func (c *Client) Erase(ctx context.Context, scope EraseScope) error {
	if scope != EraseLoaded && scope != EraseAll {
		return fmt.Errorf("pinpad: ERASE: %w: scope %#02x", ErrBadParameter, byte(scope))
	}
	_, err := c.call(ctx, []byte{cmdErase, byte(scope)}, c.opt.ResponseTimeout)
	return err
}
