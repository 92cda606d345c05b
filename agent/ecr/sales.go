package ecr

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
)

// Sales are kept for later refunds, voids and completions, which name their original only
// by the transactionId the cash register was given (RRN or order number) — long after the
// 24 hours of its process and after the batch that held it was settled.
var bucketSales = []byte("ecr.sales")

// Sale retention: refunds come weeks later; the count bound keeps the file small.
const (
	saleRetention = 180 * 24 * time.Hour
	maxSales      = 20000
)

// Sale is an original a later operation can refer to.
type Sale struct {
	Method    string           `json:"method"` // card, qr
	Kind      string           `json:"kind"`   // payment, preauth, completion
	Amount    int64            `json:"amount"` // minor units
	Refunded  int64            `json:"refunded,omitempty"`
	Completed bool             `json:"completed,omitempty"`
	Voided    bool             `json:"voided,omitempty"`
	TxnID     string           `json:"txn,omitempty"`
	Orig      *payment.OrigRef `json:"orig,omitempty"`
	CardMask  string           `json:"mask,omitempty"`
	OrderID   string           `json:"order,omitempty"`
	Time      int64            `json:"time"` // unix seconds
}

func saleKey(method, txid string) []byte { return []byte(method + ":" + txid) }

func (r *registry) openSales() error {
	return r.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSales)
		return err
	})
}

// sale finds an original; nil when unknown.
func (r *registry) sale(method, txid string) (*Sale, error) {
	var s *Sale
	err := r.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketSales).Get(saleKey(method, txid))
		if raw == nil {
			return nil
		}
		b, err := store.Checked(raw)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		s = new(Sale)
		return cbor.Unmarshal(b, s)
	})
	return s, err
}

// putSaleTx writes a sale inside a transaction (with the process that made or used it).
func putSaleTx(tx *bolt.Tx, method, txid string, s *Sale) error {
	b, err := cbor.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSales).Put(saleKey(method, txid), store.Check(b))
}

// finish commits a final process together with the sale it creates or changes, so that a
// refund's "refunded" total and its process move as one.
func (r *registry) finish(ctx context.Context, p *Process, method, txid string, s *Sale) error {
	rec, err := encodeProc(p)
	if err != nil {
		return err
	}
	if err := r.commit.Do(ctx, func(tx *bolt.Tx) error {
		if s != nil {
			if err := putSaleTx(tx, method, txid, s); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketProcs).Put([]byte(p.ID), rec)
	}); err != nil {
		return fmt.Errorf("ecr: save process %s: %w", p.ID, err)
	}
	r.publish(p)
	return nil
}

// purgeSales drops sales past their retention, and the oldest beyond the count bound.
func (r *registry) purgeSales(ctx context.Context) error {
	cutoff := r.now().Add(-saleRetention).Unix()
	type kt struct {
		k []byte
		t int64
	}
	var all []kt
	if err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSales).ForEach(func(k, v []byte) error {
			var s Sale
			b, err := store.Checked(v)
			if err == nil {
				err = cbor.Unmarshal(b, &s)
			}
			if err != nil {
				s.Time = 0 // damaged: goes first
			}
			all = append(all, kt{append([]byte(nil), k...), s.Time})
			return nil
		})
	}); err != nil {
		return err
	}
	var drop [][]byte
	excess := len(all) - maxSales
	// Oldest first when over the bound.
	if excess > 0 {
		slices.SortFunc(all, func(a, b kt) int { return cmp.Compare(a.t, b.t) })
	}
	for i, e := range all {
		if e.t < cutoff || i < excess {
			drop = append(drop, e.k)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	return r.commit.Do(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSales)
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
