package softkeys

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/posagent/posagent/keystore/tdes"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
)

// Bucket is the bbolt bucket that holds the sealed keys; this package is its only writer.
const Bucket = "softkeys"

// DefaultMaxSlot is the highest slot when Options.MaxSlot is zero.
const DefaultMaxSlot = 63

// maxMaxSlot bounds Options.MaxSlot: slot numbers are small on every terminal.
const maxMaxSlot = 1 << 16

// Options configures Open.
type Options struct {
	DB      *store.DB        // sealed keys go in bucket "softkeys"
	Commit  *store.Committer // every write goes through it (one fsync)
	Root    RootKey          // the device root key
	MaxSlot int              // highest slot; default 63
	Logger  *slog.Logger     // default: discard
}

// Backend is the software keystore.Backend. Its methods are safe for concurrent use; loads
// and erases are serialised. One Backend per database.
type Backend struct {
	db     *store.DB
	commit *store.Committer
	aead   cipher.AEAD
	max    int
	log    *slog.Logger

	wmu sync.Mutex // serialises loads, injections and erases

	bmu sync.Mutex
	bad map[int][sha256.Size]byte // unreadable records already logged, by slot
}

var _ keystore.Backend = (*Backend)(nil)

// Open opens the backend on o.DB, creating its bucket if needed.
func Open(o Options) (*Backend, error) {
	if o.DB == nil || o.Commit == nil || o.Root == nil {
		return nil, errors.New("softkeys: Options need DB, Commit and Root")
	}
	if o.MaxSlot == 0 {
		o.MaxSlot = DefaultMaxSlot
	}
	if o.MaxSlot < 1 || o.MaxSlot > maxMaxSlot {
		return nil, fmt.Errorf("softkeys: MaxSlot %d out of range 1..%d", o.MaxSlot, maxMaxSlot)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	root, err := o.Root.RootKey()
	if err != nil {
		return nil, fmt.Errorf("softkeys: root key: %w", err)
	}
	defer clear(root)
	if len(root) != RootKeySize {
		return nil, fmt.Errorf("softkeys: root key is %d bytes, want %d", len(root), RootKeySize)
	}
	aead, err := newAEAD(root)
	if err != nil {
		return nil, fmt.Errorf("softkeys: root key: %w", err)
	}
	err = o.Commit.Do(context.Background(), func(tx *store.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(Bucket))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("softkeys: %w", err)
	}
	return &Backend{
		db:     o.DB,
		commit: o.Commit,
		aead:   aead,
		max:    o.MaxSlot,
		log:    o.Logger,
		bad:    make(map[int][sha256.Size]byte),
	}, nil
}

// Name is "software".
func (b *Backend) Name() string { return "software" }

// MaxSlot is the highest physical slot.
func (b *Backend) MaxSlot() int { return b.max }

// InjectTransport stores the factory transport key (TDES of 16 or 24 bytes, AES of 16, 24 or
// 32) in slot 0. It is refused (ErrWrongUsage) if a transport key is there, unless replace is
// set. The caller should zero key afterwards; the backend keeps no reference to it.
func (b *Backend) InjectTransport(ctx context.Context, alg keystore.Algorithm, key []byte, replace bool) (keystore.Key, error) {
	switch {
	case alg == keystore.TDES && (len(key) == 16 || len(key) == 24):
	case alg == keystore.AES && (len(key) == 16 || len(key) == 24 || len(key) == 32):
	case alg != keystore.TDES && alg != keystore.AES:
		return keystore.Key{}, fmt.Errorf("softkeys: transport key: %w: unknown algorithm", keystore.ErrWrongUsage)
	default:
		return keystore.Key{}, fmt.Errorf("softkeys: transport key: %w: %s key of %d bytes", keystore.ErrBadLength, alg, len(key))
	}
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if !replace {
		old, err := b.get(keystore.TransportSlot)
		if err != nil {
			return keystore.Key{}, err
		}
		if old != nil {
			old.wipe()
			return keystore.Key{}, fmt.Errorf("softkeys: slot 0: %w: a transport key is already injected", keystore.ErrWrongUsage)
		}
	}
	r := &record{usage: keystore.UsageTransport, alg: alg, key: bytes.Clone(key)}
	defer r.wipe()
	return b.put(ctx, keystore.TransportSlot, r)
}

// LoadEncrypted stores in slot a TDES key of usage u, encrypted TDES-ECB under the key in slot
// parent, after checking its check value (3 or 4 bytes of E(K, 0…0)).
func (b *Backend) LoadEncrypted(ctx context.Context, slot, parent int, u keystore.Usage, encrypted, check []byte) (keystore.Key, error) {
	if err := b.checkLoadSlots(slot, parent); err != nil {
		return keystore.Key{}, err
	}
	switch {
	case u < keystore.UsageKEK || u > keystore.UsageTDK:
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: %s cannot be loaded", slot, keystore.ErrWrongUsage, u)
	case len(encrypted) != 8 && len(encrypted) != 16 && len(encrypted) != 24:
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: encrypted key of %d bytes", slot, keystore.ErrBadLength, len(encrypted))
	case len(check) != 3 && len(check) != 4:
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: check value of %d bytes", slot, keystore.ErrBadLength, len(check))
	}
	if err := ctx.Err(); err != nil {
		return keystore.Key{}, err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	p, err := b.parent(slot, parent, u)
	if err != nil {
		return keystore.Key{}, err
	}
	defer p.wipe()
	if p.alg != keystore.TDES {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: parent slot %d holds an AES key, which does not decrypt TDES-ECB", slot, keystore.ErrWrongUsage, parent)
	}
	blk, err := tdesCipher(p.key)
	if err != nil {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: parent slot %d: %w", slot, parent, err)
	}
	r := &record{usage: u, alg: keystore.TDES, key: make([]byte, len(encrypted))}
	defer r.wipe()
	for i := 0; i < len(encrypted); i += des.BlockSize {
		blk.Decrypt(r.key[i:i+des.BlockSize], encrypted[i:i+des.BlockSize])
	}
	cv, err := kcv.TDES(r.key, len(check))
	if err != nil {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: check value", slot, keystore.ErrBadLength)
	}
	if subtle.ConstantTimeCompare(cv, check) != 1 {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w", slot, keystore.ErrKCVMismatch)
	}
	return b.put(ctx, slot, r)
}

// parentUsage is the usage of the key a key of usage u loads under.
func parentUsage(u keystore.Usage) keystore.Usage {
	if u == keystore.UsageKEK {
		return keystore.UsageTransport
	}
	return keystore.UsageKEK
}

// MAC computes a MAC over data with the MAK in slot.
func (b *Backend) MAC(ctx context.Context, slot int, alg keystore.MACAlgorithm, data []byte) ([]byte, error) {
	if slot < 0 || slot > b.max {
		return nil, fmt.Errorf("softkeys: slot %d: %w (0..%d)", slot, keystore.ErrBadSlot, b.max)
	}
	var fn func(key, data []byte) ([]byte, error)
	switch alg {
	case keystore.MACX99:
		fn = mac.X99
	case keystore.MACX919:
		fn = mac.X919
	case keystore.MACUnionPayECB:
		fn = mac.UnionPayECB
	default:
		return nil, fmt.Errorf("softkeys: slot %d: %w: unknown MAC algorithm %d", slot, keystore.ErrWrongUsage, alg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := b.get(slot)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("softkeys: slot %d: %w", slot, keystore.ErrNoKey)
	}
	defer r.wipe()
	if r.usage != keystore.UsageMAK {
		return nil, fmt.Errorf("softkeys: slot %d: %w: a %s computes no MAC", slot, keystore.ErrWrongUsage, r.usage)
	}
	out, err := fn(r.key, data)
	if err != nil {
		if errors.Is(err, mac.ErrKeyLength) {
			return nil, fmt.Errorf("softkeys: slot %d: %w: MAC algorithm %d does not take a key of %d bytes", slot, keystore.ErrBadLength, alg, len(r.key))
		}
		return nil, fmt.Errorf("softkeys: slot %d: MAC: %w", slot, err)
	}
	return out, nil
}

// Erase deletes every loaded key in one transaction; with transport, the transport key too.
func (b *Backend) Erase(ctx context.Context, transport bool) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err := b.commit.Do(ctx, func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(Bucket))
		if bk == nil {
			return nil
		}
		var keys [][]byte
		keep := slotKey(keystore.TransportSlot)
		err := bk.ForEach(func(k, _ []byte) error {
			if transport || !bytes.Equal(k, keep) {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("softkeys: erase: %w", err)
	}
	b.bmu.Lock()
	for slot := range b.bad {
		if slot != keystore.TransportSlot || transport {
			delete(b.bad, slot)
		}
	}
	b.bmu.Unlock()
	b.log.Info("softkeys: keys erased", "transport", transport)
	return nil
}

// Keys lists the loaded slots in slot order, transport key included. Records that do not open
// are left out (they read as empty).
func (b *Backend) Keys(ctx context.Context) ([]keystore.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type sealed struct {
		slot int
		val  []byte
	}
	var recs []sealed
	err := b.db.View(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(Bucket))
		if bk == nil {
			return nil
		}
		for slot := 0; slot <= b.max; slot++ {
			if v := bk.Get(slotKey(slot)); v != nil {
				recs = append(recs, sealed{slot, bytes.Clone(v)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("softkeys: %w", err)
	}
	var out []keystore.Key
	for _, s := range recs {
		r := b.open(s.slot, s.val)
		if r == nil {
			continue
		}
		k, err := describe(s.slot, r)
		r.wipe()
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// checkLoadSlots checks the slot and parent numbers of a load.
func (b *Backend) checkLoadSlots(slot, parent int) error {
	if slot < 1 || slot > b.max {
		return fmt.Errorf("softkeys: slot %d: %w (loads go to 1..%d)", slot, keystore.ErrBadSlot, b.max)
	}
	if parent < 0 || parent > b.max {
		return fmt.Errorf("softkeys: parent slot %d: %w (0..%d)", parent, keystore.ErrBadSlot, b.max)
	}
	return nil
}

// parent opens the parent slot of a load of usage u and checks the hierarchy.
func (b *Backend) parent(slot, parent int, u keystore.Usage) (*record, error) {
	p, err := b.get(parent)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("softkeys: slot %d: %w: parent slot %d is empty", slot, keystore.ErrNoKey, parent)
	}
	if want := parentUsage(u); p.usage != want {
		p.wipe()
		return nil, fmt.Errorf("softkeys: slot %d: %w: a %s loads under a %s, parent slot %d holds a %s", slot, keystore.ErrWrongUsage, u, want, parent, p.usage)
	}
	return p, nil
}

// get opens slot: nil if it is empty or its record does not open.
func (b *Backend) get(slot int) (*record, error) {
	var r *record
	err := b.db.View(func(tx *store.Tx) error {
		bk := tx.Bucket([]byte(Bucket))
		if bk == nil {
			return nil
		}
		if v := bk.Get(slotKey(slot)); v != nil {
			r = b.open(slot, v)
		}
		return nil
	})
	if err != nil {
		r.wipe()
		return nil, fmt.Errorf("softkeys: slot %d: %w", slot, err)
	}
	return r, nil
}

// open opens a sealed value (which may be in the memory map: open only reads it). A record
// that does not open is logged once and reads as empty.
func (b *Backend) open(slot int, val []byte) *record {
	r, err := openRecord(b.aead, slot, val)
	if err == nil {
		return r
	}
	sum := sha256.Sum256(val)
	b.bmu.Lock()
	seen, ok := b.bad[slot]
	b.bad[slot] = sum
	b.bmu.Unlock()
	if !ok || seen != sum {
		b.log.Error("softkeys: sealed key record does not open (tampered, or sealed by another device); the slot reads as empty", "slot", slot)
	}
	return nil
}

// put seals r into slot durably and describes it.
func (b *Backend) put(ctx context.Context, slot int, r *record) (keystore.Key, error) {
	k, err := describe(slot, r)
	if err != nil {
		return keystore.Key{}, err
	}
	val := sealRecord(b.aead, slot, r)
	err = b.commit.Do(ctx, func(tx *store.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(Bucket))
		if err != nil {
			return err
		}
		return bk.Put(slotKey(slot), val)
	})
	if err != nil {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: store: %w", slot, err)
	}
	b.bmu.Lock()
	delete(b.bad, slot)
	b.bmu.Unlock()
	b.log.Info("softkeys: key loaded", "slot", slot, "usage", k.Usage.String(), "alg", k.Algorithm.String(), "len", k.Length, "kcv", k.KCV)
	return k, nil
}

// describe is the keystore.Key of r in slot: never the key itself.
func describe(slot int, r *record) (keystore.Key, error) {
	var (
		cv  []byte
		err error
	)
	if r.alg == keystore.AES {
		cv, err = kcv.AES(r.key, 3)
	} else {
		cv, err = kcv.TDES(r.key, 3)
	}
	if err != nil || len(cv) < 3 {
		return keystore.Key{}, fmt.Errorf("softkeys: slot %d: %w: no check value for a %s key of %d bytes", slot, keystore.ErrBadLength, r.alg, len(r.key))
	}
	return keystore.Key{
		Slot:      slot,
		Usage:     r.usage,
		Algorithm: r.alg,
		Length:    len(r.key),
		KCV:       fmt.Sprintf("%X", cv[:3]),
	}, nil
}

// tdesCipher is the TDES cipher of a key (see keystore/tdes), with the keystore's error.
func tdesCipher(key []byte) (cipher.Block, error) {
	b, err := tdes.New(key)
	if err != nil {
		return nil, fmt.Errorf("%w: TDES key of %d bytes", keystore.ErrBadLength, len(key))
	}
	return b, nil
}
