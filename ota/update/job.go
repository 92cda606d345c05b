package update

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/transfer"
)

// Bucket "ota" and its parts. The updater is their only owner.
var (
	bucketOTA     = []byte("ota")
	bucketJobs    = []byte("jobs")      // command id → Job
	bucketXfer    = []byte("xfer")      // command id + "/" + component → transfer.Checkpoint
	bucketHW      = []byte("highwater") // release key id → serial (8 bytes) + manifest digest
	bucketInst    = []byte("installed") // component name → Installed
	bucketCancels = []byte("cancels")   // command ids cancelled before they started
	keyManaged    = []byte("apps.managed")
)

// Stage is where an update job is. Each is committed before the work it names starts, so a
// power cut resumes the job there.
type Stage string

// Stages, in order. Waiting sits before installing: downloads go on at any time, installs wait
// for a quiet terminal.
const (
	StageDownloading Stage = "downloading"
	StageVerifying   Stage = "verifying"
	StageWaiting     Stage = "waiting"
	StageInstalling  Stage = "installing"
	StageRebooting   Stage = "rebooting"
	StageHealthCheck Stage = "health-check"
	// StageDone: the outcome is recorded; a resumed command answers with it.
	StageDone Stage = "done"
)

var stageRank = map[Stage]int{"": 0, StageDownloading: 0, StageVerifying: 1, StageWaiting: 2, StageInstalling: 3,
	StageRebooting: 4, StageHealthCheck: 5, StageDone: 6}

// before reports whether s comes before t in a job's life.
func (s Stage) before(t Stage) bool { return stageRank[s] < stageRank[t] }

// Outcome is a finished job's answer, kept so that the command, resumed after a power cut
// between the end of the work and its final ack, gives the same answer without redoing it.
type Outcome struct {
	Result    *Result         `cbor:"result,omitempty"`
	Reason    manifest.Reason `cbor:"reason,omitempty"`
	Component string          `cbor:"component,omitempty"`
	Message   string          `cbor:"message,omitempty"`
	Ended     int64           `cbor:"ended"`
}

func (o *Outcome) result() (*Result, error) {
	if o == nil {
		return nil, errors.New("update: finished job without outcome")
	}
	if o.Reason != "" || o.Message != "" {
		return o.Result, &manifest.Error{Reason: o.Reason, Component: o.Component, Err: errors.New(o.Message)}
	}
	return o.Result, nil
}

// Item is one component of a job.
type Item struct {
	Component manifest.Component `cbor:"component"`
	Source    SourceSpec         `cbor:"source"`
	Fetched   bool               `cbor:"fetched,omitempty"`
	Installed bool               `cbor:"installed,omitempty"`
}

// Job is the persisted state of one update command.
type Job struct {
	Command  string `cbor:"command"`
	Kind     string `cbor:"kind"` // ota.install, apps.set, file.put
	Stage    Stage  `cbor:"stage"`
	Release  string `cbor:"release,omitempty"`
	Serial   uint64 `cbor:"serial,omitempty"`
	KeyID    string `cbor:"kid,omitempty"`
	Items    []Item `cbor:"items"`
	Slot     string `cbor:"slot,omitempty"` // agent slot put on trial
	Started  int64  `cbor:"started"`        // unix s
	Settled  bool   `cbor:"settled,omitempty"`
	Now      bool   `cbor:"now,omitempty"`
	MaxTries int    `cbor:"maxTries,omitempty"`
	Deadline int64  `cbor:"deadline,omitempty"` // health-check seconds
	// Uninstall lists the packages apps.set removes after its installs.
	Uninstall []string `cbor:"uninstall,omitempty"`
	// File is file.put's destination.
	Location string   `cbor:"location,omitempty"`
	Name     string   `cbor:"name,omitempty"`
	Outcome  *Outcome `cbor:"outcome,omitempty"`
}

// Installed is what the terminal records of an installed component.
type Installed struct {
	Version string        `cbor:"version"`
	Kind    manifest.Kind `cbor:"kind"`
	Release string        `cbor:"release,omitempty"`
	SHA256  []byte        `cbor:"sha256,omitempty"`
	At      int64         `cbor:"at"`
}

func initBuckets(db *store.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketOTA)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketJobs, bucketXfer, bucketHW, bucketInst, bucketCancels} {
			if _, err := root.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

func sub(tx *bolt.Tx, name []byte) *bolt.Bucket { return tx.Bucket(bucketOTA).Bucket(name) }

func (u *Updater) loadJob(id string) (*Job, bool, error) {
	var j *Job
	err := u.db.View(func(tx *bolt.Tx) error {
		v := sub(tx, bucketJobs).Get([]byte(id))
		if v == nil {
			return nil
		}
		j = new(Job)
		return tmsproto.Unmarshal(v, j)
	})
	if err != nil {
		return nil, false, fmt.Errorf("update: job %s: %w", id, err)
	}
	return j, j != nil, nil
}

func putJob(tx *bolt.Tx, j *Job) error {
	v, err := tmsproto.Marshal(j)
	if err != nil {
		return err
	}
	return sub(tx, bucketJobs).Put([]byte(j.Command), v)
}

// saveJob commits j, with extra writes in the same transaction.
func (u *Updater) saveJob(ctx context.Context, j *Job, extra func(*bolt.Tx) error) error {
	return u.commit.Do(context.WithoutCancel(ctx), func(tx *bolt.Tx) error {
		if err := putJob(tx, j); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
}

// finish records a job's outcome and drops its downloads and transfer checkpoints. The record
// stays (pruned after keepDone) so a resumed command answers the same.
func (u *Updater) finish(ctx context.Context, j *Job, res *Result, err error) {
	o := &Outcome{Result: res, Ended: u.opts.Now().Unix()}
	if err != nil {
		o.Message = err.Error()
		var me *manifest.Error
		if errors.As(err, &me) {
			o.Reason, o.Component = me.Reason, me.Component
			if me.Err != nil {
				o.Message = me.Err.Error()
			}
		} else {
			o.Reason = ReasonInstallFailed
		}
	}
	j.Stage, j.Outcome = StageDone, o
	u.removeFiles(j)
	if cerr := u.commit.Do(context.WithoutCancel(ctx), func(tx *bolt.Tx) error {
		if err := putJob(tx, j); err != nil {
			return err
		}
		x := sub(tx, bucketXfer)
		prefix := []byte(j.Command + "/")
		var keys [][]byte
		c := x.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := x.Delete(k); err != nil {
				return err
			}
		}
		return sub(tx, bucketCancels).Delete([]byte(j.Command))
	}); cerr != nil {
		u.log.Error("recording update outcome", "cmd", j.Command, "err", cerr)
	}
}

// keepDone is how long finished jobs are remembered: longer than any command stays in doubt.
const keepDone = 30 * 24 * time.Hour

// pruneDone forgets finished jobs older than keepDone.
func (u *Updater) pruneDone() error {
	limit := u.opts.Now().Add(-keepDone).Unix()
	return u.db.Update(func(tx *bolt.Tx) error {
		b := sub(tx, bucketJobs)
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var j Job
			if tmsproto.Unmarshal(v, &j) == nil && j.Stage == StageDone && j.Outcome != nil && j.Outcome.Ended < limit {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err == nil {
				err = b.Delete(k)
			}
		}
		return err
	})
}

func (u *Updater) installed() (map[string]Installed, error) {
	out := map[string]Installed{}
	err := u.db.View(func(tx *bolt.Tx) error {
		return sub(tx, bucketInst).ForEach(func(k, v []byte) error {
			var in Installed
			if err := tmsproto.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("installed %s: %w", k, err)
			}
			out[string(k)] = in
			return nil
		})
	})
	return out, err
}

func putInstalled(tx *bolt.Tx, name string, in Installed) error {
	v, err := tmsproto.Marshal(in)
	if err != nil {
		return err
	}
	return sub(tx, bucketInst).Put([]byte(name), v)
}

// highWater returns the highest accepted serial per release key, and the digest of the
// manifest that carried it (the same release may be sent again; another one under the same
// serial may not).
func (u *Updater) highWater() (map[string]uint64, map[string][]byte, error) {
	serials, digests := map[string]uint64{}, map[string][]byte{}
	err := u.db.View(func(tx *bolt.Tx) error {
		return sub(tx, bucketHW).ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				return fmt.Errorf("high-water mark %s: %d bytes", k, len(v))
			}
			serials[string(k)] = binary.BigEndian.Uint64(v)
			digests[string(k)] = append([]byte(nil), v[8:]...)
			return nil
		})
	})
	return serials, digests, err
}

func putHighWater(tx *bolt.Tx, kid string, serial uint64, digest []byte) error {
	b := sub(tx, bucketHW)
	if v := b.Get([]byte(kid)); len(v) >= 8 && binary.BigEndian.Uint64(v) > serial {
		return nil
	}
	return b.Put([]byte(kid), append(binary.BigEndian.AppendUint64(nil, serial), digest...))
}

func (u *Updater) cancelled(id string) bool {
	var yes bool
	_ = u.db.View(func(tx *bolt.Tx) error {
		yes = sub(tx, bucketCancels).Get([]byte(id)) != nil
		return nil
	})
	return yes
}

// checkpoints keeps one transfer's progress in bucket ota/xfer, committed durably.
type checkpoints struct {
	u   *Updater
	key []byte
}

func (u *Updater) checkpoints(cmd, component string) *checkpoints {
	return &checkpoints{u: u, key: []byte(cmd + "/" + component)}
}

func (c *checkpoints) Load() (transfer.Checkpoint, bool, error) {
	var cp transfer.Checkpoint
	var ok bool
	err := c.u.db.View(func(tx *bolt.Tx) error {
		v := sub(tx, bucketXfer).Get(c.key)
		if v == nil {
			return nil
		}
		ok = true
		return tmsproto.Unmarshal(v, &cp)
	})
	return cp, ok, err
}

func (c *checkpoints) Save(cp transfer.Checkpoint) error {
	v, err := tmsproto.Marshal(cp)
	if err != nil {
		return err
	}
	return c.u.commit.Do(context.Background(), func(tx *bolt.Tx) error {
		return sub(tx, bucketXfer).Put(c.key, v)
	})
}
