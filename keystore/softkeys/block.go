package softkeys

import (
	"context"
	"fmt"
	"strings"

	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/tr31"
)

// LoadBlock unwraps a TR-31 key block with the key in slot parent and stores the key in slot.
// The package comment gives the header rules.
func (b *Backend) LoadBlock(ctx context.Context, slot, parent int, block string) (keystore.Key, error) {
	if err := b.checkLoadSlots(slot, parent); err != nil {
		return keystore.Key{}, err
	}
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	p, err := b.get(parent)
	if err != nil {
		return keystore.Key{}, err
	}
	if p == nil {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: parent slot %d is empty", slot, keystore.ErrNoKey, parent)
	}
	defer p.wipe()
	// Only the transport key and KEKs unwrap: refuse before the block is even looked at.
	if p.usage != keystore.UsageTransport && p.usage != keystore.UsageKEK {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: parent slot %d holds a %s, which unwraps nothing", slot, keystore.ErrWrongUsage, parent, p.usage)
	}
	h, key, err := tr31.Unwrap(p.key, block)
	if err != nil {
		clear(key)
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: %w", slot, keystore.ErrBadKeyBlock, err)
	}
	r := &record{key: key}
	defer r.wipe()
	r.usage, r.alg, err = blockRole(h)
	if err != nil {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w", slot, err)
	}
	if want := parentUsage(r.usage); p.usage != want {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: a %s loads under a %s, parent slot %d holds a %s", slot, keystore.ErrWrongUsage, r.usage, want, parent, p.usage)
	}
	if !validKey(slot, r.usage, r.alg, len(r.key)) {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: %s key of %d bytes", slot, keystore.ErrBadLength, r.alg, len(r.key))
	}
	return b.put(ctx, slot, r)
}

// blockRole maps a TR-31 header to the usage and algorithm of its key (see the package
// comment), or ErrWrongUsage.
func blockRole(h tr31.Header) (keystore.Usage, keystore.Algorithm, error) {
	var (
		u     keystore.Usage
		modes string
	)
	switch h.Usage {
	case "K0", "K1":
		u, modes = keystore.UsageKEK, "BDN"
	case "P0":
		u, modes = keystore.UsagePIK, "BEN"
	case "M0", "M1", "M3":
		u, modes = keystore.UsageMAK, "CGN"
	case "D0":
		u, modes = keystore.UsageTDK, "BDEN"
	default:
		return 0, 0, fmt.Errorf("%w: key block usage %q is not supported", keystore.ErrWrongUsage, h.Usage)
	}
	var alg keystore.Algorithm
	switch {
	case h.Algorithm == 'T':
		alg = keystore.TDES
	case h.Algorithm == 'A' && u == keystore.UsageKEK:
		alg = keystore.AES
	default:
		return 0, 0, fmt.Errorf("%w: key block algorithm %q not allowed for a %s", keystore.ErrWrongUsage, h.Algorithm, u)
	}
	if h.ModeOfUse == 0 || strings.IndexByte(modes, h.ModeOfUse) < 0 {
		return 0, 0, fmt.Errorf("%w: key block mode of use %q not allowed for a %s", keystore.ErrWrongUsage, h.ModeOfUse, u)
	}
	return u, alg, nil
}
