// Package padkeys keeps the terminal's keys in the PIN pad's secure element, as a real
// terminal does: keys go in wrapped (TR-31 blocks, or TDES under a KEK for a sign-in) and
// never come out; MACs and PIN blocks are computed inside the pad. This package only
// translates the keystore.Backend contract into PIN pad commands (docs/pinpad-protocol.md)
// and the pad's statuses into the keystore's errors.
package padkeys

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/keystore"
)

// ErrNoPad: no PIN pad is attached (yet); the operation can be tried again.
var ErrNoPad = errors.New("padkeys: no PIN pad attached")

// Backend is a keystore.Backend on a PIN pad.
type Backend struct {
	pad   func() *pinpad.Client
	ready <-chan struct{}

	mu     sync.Mutex
	opened *pinpad.Client // the client a session was opened on
}

// New makes a backend on the PIN pad pad returns (nil when none is attached: the hardware
// manager owns the pad). Operations wait for ready to be closed first — the manager has set
// its devices up — so a command resumed at start does not find the pad missing; a nil ready
// does not wait.
func New(pad func() *pinpad.Client, ready <-chan struct{}) *Backend {
	return &Backend{pad: pad, ready: ready}
}

var _ keystore.Backend = (*Backend)(nil)

// Name implements keystore.Backend.
func (b *Backend) Name() string { return "pinpad" }

// MaxSlot implements keystore.Backend.
func (b *Backend) MaxSlot() int { return pinpad.MaxSlot }

// client is the attached pad with a session open: key commands need one, and the driver
// keeps it open across pad restarts once it has opened it.
func (b *Backend) client(ctx context.Context) (*pinpad.Client, error) {
	if b.ready != nil {
		select {
		case <-b.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := b.pad()
	if c == nil {
		return nil, ErrNoPad
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.opened != c {
		if err := c.OpenSession(ctx); err != nil {
			return nil, err
		}
		b.opened = c
	}
	return c, nil
}

// LoadBlock implements keystore.Backend with LOAD KEY BLOCK.
func (b *Backend) LoadBlock(ctx context.Context, slot, parent int, block string) (keystore.Key, error) {
	c, err := b.client(ctx)
	if err != nil {
		return keystore.Key{}, err
	}
	r, err := c.LoadKeyBlock(ctx, slot, parent, block)
	if err != nil {
		return keystore.Key{}, mapErr(err)
	}
	k := keystore.Key{Slot: slot, Usage: keystore.Usage(r.Usage), KCV: r.KCV.String()}
	if r.AES {
		k.Algorithm = keystore.AES
	}
	b.fillLength(ctx, c, &k)
	return k, nil
}

// LoadEncrypted implements keystore.Backend with LOAD KEY.
func (b *Backend) LoadEncrypted(ctx context.Context, slot, parent int, u keystore.Usage, encrypted, check []byte) (keystore.Key, error) {
	c, err := b.client(ctx)
	if err != nil {
		return keystore.Key{}, err
	}
	kcv, err := c.LoadKey(ctx, pinpad.KeyLoad{Slot: slot, Usage: pinpad.Usage(u), Parent: parent,
		Encrypted: encrypted, CheckValue: check})
	if err != nil {
		return keystore.Key{}, mapErr(err)
	}
	return keystore.Key{Slot: slot, Usage: u, Algorithm: keystore.TDES, Length: len(encrypted), KCV: kcv.String()}, nil
}

// fillLength reads the key length from INFO; a failure leaves it 0 (it is informative).
func (b *Backend) fillLength(ctx context.Context, c *pinpad.Client, k *keystore.Key) {
	info, err := c.Info(ctx)
	if err != nil {
		return
	}
	for _, s := range info.Slots {
		if s.Slot == k.Slot {
			k.Length = s.KeyLen
		}
	}
}

// MAC implements keystore.Backend with the pad's MAC command.
func (b *Backend) MAC(ctx context.Context, slot int, alg keystore.MACAlgorithm, data []byte) ([]byte, error) {
	c, err := b.client(ctx)
	if err != nil {
		return nil, err
	}
	out, err := c.MAC(ctx, slot, pinpad.MACAlgorithm(alg), data)
	if err != nil {
		return nil, mapErr(err)
	}
	return out, nil
}

// Erase implements keystore.Backend with ERASE.
func (b *Backend) Erase(ctx context.Context, transport bool) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	scope := pinpad.EraseLoaded
	if transport {
		scope = pinpad.EraseAll
	}
	return mapErr(c.Erase(ctx, scope))
}

// Keys implements keystore.Backend: INFO for the slots, KEY CHECK VALUE for each.
func (b *Backend) Keys(ctx context.Context) ([]keystore.Key, error) {
	c, err := b.client(ctx)
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]keystore.Key, 0, len(info.Slots))
	for _, s := range info.Slots {
		u, kcv, err := c.KeyCheckValue(ctx, s.Slot)
		if err != nil {
			return nil, mapErr(err)
		}
		k := keystore.Key{Slot: s.Slot, Usage: keystore.Usage(u), Length: s.KeyLen, KCV: kcv.String()}
		if s.AES {
			k.Algorithm = keystore.AES
		}
		out = append(out, k)
	}
	return out, nil
}

// mapErr gives the pad's refusals the keystore's names, keeping the pad's error inside.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct{ pad, ks error }{
		{pinpad.ErrNoKey, keystore.ErrNoKey},
		{pinpad.ErrWrongUsage, keystore.ErrWrongUsage},
		{pinpad.ErrKCVMismatch, keystore.ErrKCVMismatch},
		{pinpad.ErrBadKeyBlock, keystore.ErrBadKeyBlock},
		{pinpad.ErrBadParameter, keystore.ErrBadLength},
	} {
		if errors.Is(err, m.pad) {
			return fmt.Errorf("%w: %w", m.ks, err)
		}
	}
	return err
}
