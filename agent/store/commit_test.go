package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Writes racing Close either commit or get ErrClosed; none waits forever.
func TestDoAfterCloseNeverHangs(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for round := range 200 {
		c := NewCommitter(db)
		var wg sync.WaitGroup
		results := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				results <- c.Do(context.Background(), func(tx *Tx) error {
					_, err := tx.CreateBucketIfNotExists([]byte("b"))
					return err
				})
			})
		}
		c.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a write racing Close never returned", round)
		}
		close(results)
		for err := range results {
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// A group with one failing write commits the others, each retried alone.
func TestFailingWriteDoesNotSinkItsGroup(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := NewCommitter(db)
	defer c.Close()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			errs[i] = c.Do(context.Background(), func(tx *Tx) error {
				if i == 7 {
					return boom
				}
				b, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				return b.Put([]byte{byte(i)}, []byte{1})
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 7) != errors.Is(err, boom) || (i != 7 && err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 15 {
			t.Errorf("%d keys committed, want 15", n)
		}
		return nil
	})
}
