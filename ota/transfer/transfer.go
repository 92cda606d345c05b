// Package transfer downloads one file of a release so that a power cut or a broken connection
// costs at most one block of re-fetching: bytes go to Path+".part" and, every Block bytes, the
// file is synced and a checkpoint (offset and the running SHA-256 state) is saved. A restart
// truncates the .part file to the checkpoint, restores the hash state and goes on from there;
// only at the end are the exact size and digest checked and the file renamed into place.
//
// The bytes come from a Source: HTTPSource (HTTP Range requests) here, the MQTT block pull in
// ota/blob. Nothing holds the whole file in memory.
package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/ota/manifest"
)

// DefaultBlock is the checkpoint granularity when Transfer.Block is not set: at most this many
// bytes are fetched again after an interruption.
const DefaultBlock = 64 << 10

// DefaultRetry is the backoff between attempts when Transfer.Retry is zero.
var DefaultRetry = backoff.Policy{Base: time.Second, Cap: 30 * time.Second}

// Source delivers the bytes of one file from an offset on, in order.
type Source interface {
	Open(ctx context.Context, off int64) (io.ReadCloser, error)
}

// Refetcher is implemented by a reader from Source.Open that had to fetch bytes before off
// again (a server that ignores Range): the transfer adds them to Checkpoint.Refetched.
type Refetcher interface {
	Refetched() int64
}

// ErrPermanent is matched (errors.Is) by source errors that no retry can fix: the file is
// gone, the server refuses the range, the server says the transfer is unknown.
var ErrPermanent = errors.New("permanent source error")

// PermanentError marks a source error as permanent; Run returns it at once instead of
// retrying.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string        { return e.Err.Error() }
func (e *PermanentError) Unwrap() error        { return e.Err }
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent wraps err as a PermanentError (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Checkpoint is the durable progress of a transfer.
type Checkpoint struct {
	Offset    int64  `cbor:"offset"`    // bytes durably in the .part file and hashed
	Hash      []byte `cbor:"hash"`      // sha256 state (encoding.BinaryMarshaler) at Offset
	Refetched int64  `cbor:"refetched"` // bytes fetched again after interruptions, total
	Resumes   int    `cbor:"resumes"`
}

// Checkpoints persists a transfer's progress; Save returns only once it is durable.
type Checkpoints interface {
	Load() (Checkpoint, bool, error)
	Save(Checkpoint) error
}

// Transfer is one file to fetch.
type Transfer struct {
	Path     string // final file; bytes go to Path+".part" first
	Size     int64
	SHA256   []byte
	Source   Source
	State    Checkpoints
	Block    int                     // checkpoint granularity, default DefaultBlock
	Retry    backoff.Policy          // default DefaultRetry
	Progress func(done, total int64) // optional, called after each checkpoint
	Logger   *slog.Logger
}

// PartPath is where the bytes of a transfer to path are written until they are verified.
func PartPath(path string) string { return path + ".part" }

// Run fetches what is missing, resuming from the last checkpoint, and retries source errors
// with backoff until ctx ends. At the end it checks size and SHA-256, then renames the .part
// file to Path and syncs the directory. If Path already holds the right bytes it returns at
// once.
//
// Errors: *manifest.Error with ReasonHashMismatch (the .part file and the checkpoint are reset
// first, so a retry starts clean), ReasonTooLarge (the source gives more than Size) or
// ReasonTruncated (the source ends before Size); errors matching ErrPermanent; ctx's error.
func (t *Transfer) Run(ctx context.Context) (Checkpoint, error) {
	if err := t.check(); err != nil {
		return Checkpoint{}, err
	}
	log := t.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("file", filepath.Base(t.Path))
	cp, _, err := t.State.Load()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("transfer: load checkpoint: %w", err)
	}
	done, err := complete(t.Path, t.Size, t.SHA256)
	if err != nil {
		return cp, err
	}
	if done {
		return cp, nil
	}
	r := &run{t: t, log: log, cp: cp, buf: make([]byte, t.block())}
	defer r.close()
	if err := r.resume(); err != nil {
		return r.cp, err
	}
	if err := r.fetch(ctx); err != nil {
		return r.cp, err
	}
	return r.cp, r.finish()
}

func (t *Transfer) check() error {
	switch {
	case t.Path == "":
		return errors.New("transfer: no path")
	case t.Size <= 0:
		return fmt.Errorf("transfer: size %d", t.Size)
	case len(t.SHA256) != sha256.Size:
		return fmt.Errorf("transfer: sha256 of %d bytes", len(t.SHA256))
	case t.Source == nil || t.State == nil:
		return errors.New("transfer: no source or no checkpoint state")
	}
	return nil
}

func (t *Transfer) block() int {
	if t.Block > 0 {
		return t.Block
	}
	return DefaultBlock
}

func (t *Transfer) retry() backoff.Policy {
	if t.Retry == (backoff.Policy{}) {
		return DefaultRetry
	}
	return t.Retry
}

// complete reports whether path already holds exactly size bytes with digest sum.
func complete(path string, size int64, sum []byte) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("transfer: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("transfer: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() != size {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("transfer: hash %s: %w", filepath.Base(path), err)
	}
	return bytes.Equal(h.Sum(nil), sum), nil
}

// run is the state of one Run.
type run struct {
	t   *Transfer
	log *slog.Logger
	cp  Checkpoint
	f   *os.File
	h   hash.Hash
	buf []byte
	n   int // bytes in buf not yet written
}

func (r *run) close() {
	if r.f != nil {
		_ = r.f.Close()
	}
}

// resume opens the .part file and brings it, the hash and the checkpoint into agreement.
func (r *run) resume() error {
	f, err := os.OpenFile(PartPath(r.t.Path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	r.f = f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	onDisk := st.Size()
	r.h = sha256.New()
	if r.cp.Offset > 0 || len(r.cp.Hash) > 0 {
		if err := r.restoreHash(onDisk); err != nil {
			// A checkpoint that does not fit the file (or this code) is not trusted: start
			// over; what the file holds is counted as fetched again below.
			r.log.Warn("checkpoint unusable, starting the file again", "err", err)
			r.cp.Offset, r.cp.Hash = 0, nil
			r.h = sha256.New()
		}
	}
	if onDisk == 0 && r.cp.Offset == 0 {
		return nil
	}
	// Bytes beyond the checkpoint were fetched but never confirmed durable: they are
	// dropped and fetched again.
	if onDisk > r.cp.Offset {
		r.cp.Refetched += onDisk - r.cp.Offset
	}
	if err := f.Truncate(r.cp.Offset); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if _, err := f.Seek(r.cp.Offset, io.SeekStart); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	r.cp.Resumes++
	r.log.Info("transfer resumed", "offset", r.cp.Offset, "size", r.t.Size, "refetched", r.cp.Refetched)
	return r.save()
}

func (r *run) restoreHash(onDisk int64) error {
	if r.cp.Offset < 0 || r.cp.Offset > r.t.Size {
		return fmt.Errorf("offset %d outside 0..%d", r.cp.Offset, r.t.Size)
	}
	if onDisk < r.cp.Offset {
		return fmt.Errorf("part file has %d bytes, checkpoint says %d", onDisk, r.cp.Offset)
	}
	u, ok := r.h.(encoding.BinaryUnmarshaler)
	if !ok {
		return errors.New("sha256 state cannot be restored")
	}
	return u.UnmarshalBinary(r.cp.Hash)
}

func (r *run) save() error {
	m, ok := r.h.(encoding.BinaryMarshaler)
	if !ok {
		return errors.New("transfer: sha256 state cannot be saved")
	}
	state, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	r.cp.Hash = state
	if err := r.t.State.Save(r.cp); err != nil {
		return fmt.Errorf("transfer: save checkpoint: %w", err)
	}
	return nil
}

// flush makes the buffered bytes durable and checkpoints them: write, sync, then save, so a
// checkpoint never names bytes the file might not have.
func (r *run) flush() error {
	if r.n == 0 {
		return nil
	}
	if _, err := r.f.Write(r.buf[:r.n]); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	r.h.Write(r.buf[:r.n])
	r.cp.Offset += int64(r.n)
	r.n = 0
	if err := r.save(); err != nil {
		return err
	}
	if r.t.Progress != nil {
		r.t.Progress(r.cp.Offset, r.t.Size)
	}
	return nil
}

// fetch reads from the source until Size bytes are checkpointed, retrying transient errors.
func (r *run) fetch(ctx context.Context) error {
	attempt := 0
	for r.cp.Offset < r.t.Size {
		before := r.cp.Offset
		err := r.attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var me *manifest.Error
		if errors.Is(err, ErrPermanent) || errors.As(err, &me) {
			return err
		}
		var le errLocal
		if errors.As(err, &le) {
			return le.error
		}
		if r.cp.Offset > before {
			attempt = 0
		}
		delay := r.t.retry().Delay(attempt, nil)
		attempt++
		r.log.Warn("transfer interrupted", "err", err, "offset", r.cp.Offset, "size", r.t.Size, "retry_in", delay.Round(time.Millisecond))
		if err := backoff.Sleep(ctx, delay); err != nil {
			return err
		}
	}
	return nil
}

// errLocal marks failures of the file system or the checkpoint store: not the source's
// fault, so not retried here; the caller decides (a full disk needs someone to act).
type errLocal struct{ error }

// attempt opens the source once at the checkpoint and reads until the end or an error. What
// was read before an error is checkpointed, so the next attempt starts after it.
func (r *run) attempt(ctx context.Context) (err error) {
	rc, err := r.t.Source.Open(ctx, r.cp.Offset)
	if err != nil {
		return fmt.Errorf("open source at %d: %w", r.cp.Offset, err)
	}
	defer rc.Close()
	if rf, ok := rc.(Refetcher); ok {
		defer func() { r.cp.Refetched += rf.Refetched() }()
	}
	for {
		want := int(min(int64(len(r.buf)), r.t.Size-r.cp.Offset))
		if want == 0 {
			return r.checkEnd(rc)
		}
		n, rerr := rc.Read(r.buf[r.n:want])
		r.n += n
		if r.n == want {
			if err := r.flush(); err != nil {
				return errLocal{err}
			}
		}
		if rerr == nil {
			continue
		}
		// Keep what arrived before the error.
		if err := r.flush(); err != nil {
			return errLocal{err}
		}
		if rerr == io.EOF {
			if r.cp.Offset == r.t.Size {
				return nil
			}
			return &manifest.Error{Reason: manifest.ReasonTruncated, Err: fmt.Errorf("source ended at %d of %d bytes", r.cp.Offset, r.t.Size)}
		}
		return rerr
	}
}

// checkEnd reads once past Size: a source that has more is serving another file.
func (r *run) checkEnd(rc io.Reader) error {
	var one [1]byte
	for {
		n, err := rc.Read(one[:])
		if n > 0 {
			return &manifest.Error{Reason: manifest.ReasonTooLarge, Err: fmt.Errorf("source has more than %d bytes", r.t.Size)}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// Everything needed is durable; a broken connection after the last byte
			// changes nothing.
			return nil
		}
	}
}

// finish checks the digest and moves the file into place.
func (r *run) finish() error {
	if !bytes.Equal(r.h.Sum(nil), r.t.SHA256) {
		r.log.Warn("transfer failed verification; starting clean next time", "size", r.t.Size)
		if err := r.reset(); err != nil {
			return err
		}
		return &manifest.Error{Reason: manifest.ReasonHashMismatch, Err: errors.New("sha256 of the received bytes differs from the manifest")}
	}
	if err := r.f.Close(); err != nil {
		r.f = nil
		return fmt.Errorf("transfer: %w", err)
	}
	r.f = nil
	if err := os.Rename(PartPath(r.t.Path), r.t.Path); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if err := SyncDir(filepath.Dir(r.t.Path)); err != nil {
		return err
	}
	r.log.Info("transfer complete", "size", r.t.Size, "resumes", r.cp.Resumes, "refetched", r.cp.Refetched)
	return nil
}

// reset empties the .part file and the checkpoint, keeping the counters.
func (r *run) reset() error {
	if err := r.f.Truncate(0); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	r.cp.Offset = 0
	r.h = sha256.New()
	return r.save()
}

// SyncDir makes a rename or a new file in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("transfer: sync %s: %w", dir, err)
	}
	return nil
}
