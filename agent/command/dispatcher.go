// Package command receives signed TMS commands and runs them through their lifecycle:
// accepted → running(progress) → succeeded | failed, or rejected before anything runs.
//
// Durability is the point of the design. A command's raw bytes are committed to the inbox
// before the broker gets its PUBACK; every state change is committed together with the ack that
// reports it, in one transaction, so the TMS never hears of a state the terminal does not
// remember. A journal entry per command id answers repeats with the recorded result and lets a
// command interrupted by a crash or a restart resume (handlers are idempotent) instead of
// running twice or vanishing.
package command

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

var (
	bucketCommands = []byte("commands")
	bucketInbox    = []byte("inbox")
	bucketJournal  = []byte("journal")
	bucketSeqs     = []byte("seqs")
)

// MaxInbox bounds received-but-unprocessed commands. Past it Receive fails and the broker keeps
// the message, which is the back-pressure a flood deserves.
const MaxInbox = 256

// ErrInboxFull is returned by Receive when MaxInbox commands wait already.
var ErrInboxFull = errors.New("command: inbox full")

// Kind is what the agent knows about one command kind.
type Kind struct {
	// Check decodes and validates the body before the command is accepted. An error rejects
	// the command with invalid_body and nothing runs. It returns the parsed body.
	Check func(body []byte) (any, error)
	// Run executes the command. It must be idempotent: after a crash it runs again with
	// Request.Resumed set. A result returned with an error goes on the failed ack. If it returns because ctx was cancelled (the agent is stopping),
	// the command stays running and resumes at the next start.
	Run func(ctx context.Context, req *Request) (result any, err error)
	// Then, if set, runs after the final succeeded ack is durably queued (a restart, say).
	Then func()
	// Concurrent kinds run as soon as they are accepted. All others run one at a time in the
	// order they were accepted, so config.apply v3 can never overtake v2 and an install never
	// overlaps a reboot.
	Concurrent bool
}

// Request is a command being executed.
type Request struct {
	Command *tmsproto.Command
	Body    any  // what Kind.Check returned
	Resumed bool // the agent stopped while this command ran; Run is called again
	d       *Dispatcher
	last    int
	stage   string
}

// Report reports a stage of a long command (an OTA: downloading, verifying, installing …)
// and percent done within the whole command on up/ack. A new stage is always reported; within
// a stage, moves of less than 5 points are dropped like Progress does.
func (r *Request) Report(ctx context.Context, stage string, pct int) error {
	if pct < 0 || pct > 100 {
		return nil
	}
	if stage == r.stage && (pct == r.last || pct-r.last < 5 && pct != 100) {
		return nil
	}
	r.stage, r.last = stage, pct
	return r.d.transition(ctx, r.Command, tmsproto.StateRunning, func(e *entry, a *tmsproto.Ack) {
		e.Progress, a.Progress = pct, pct
		e.Stage, a.Stage = stage, stage
	})
}

// Failure is an error whose failed or rejected ack carries its own reason instead of the
// generic exec_failed / invalid_body: an OTA says rollback, hash_mismatch, rolled_back….
type Failure struct {
	Reason tmsproto.Reason
	Err    error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Fail wraps err so that the ack carries reason.
func Fail(reason tmsproto.Reason, err error) error { return &Failure{Reason: reason, Err: err} }

// reasonOf is the reason err asks for, or def.
func reasonOf(err error, def tmsproto.Reason) tmsproto.Reason {
	var f *Failure
	if errors.As(err, &f) && f.Reason != "" {
		return f.Reason
	}
	return def
}

// Progress reports percent done on up/ack. Reports closer than 5 points apart are dropped so
// a chatty handler does not flood the air; the error is only a local storage failure.
func (r *Request) Progress(ctx context.Context, pct int) error { return r.Report(ctx, r.stage, pct) }

// Options configure a Dispatcher.
type Options struct {
	DB       *store.DB
	Commit   *store.Committer
	Outbox   *outbox.Outbox
	Verifier *tmsproto.Verifier
	// ReplayWindow is how many executed command seqs are remembered one by one; anything older
	// than the oldest remembered is refused as a replay.
	ReplayWindow int
	Now          func() time.Time
	Logger       *slog.Logger
	// Audit, if set, hears of every command refused (rejected) and every command finished
	// (succeeded or failed), after that state is committed with its ack. Acceptance and
	// progress are not audited: the final state says what happened.
	Audit func(ctx context.Context, ev CommandAudit)
}

// CommandAudit is one command's outcome for the audit log. It carries no body or result:
// those may hold key material or configuration; the TMS has them on up/ack.
type CommandAudit struct {
	ID    string // empty when the command could not be verified (Ref names it then)
	Ref   string // hex of the first bytes of the raw message's hash, for an unverified one
	Kind  string
	Seq   uint64
	State tmsproto.State // rejected, succeeded or failed
	// Reason and Message say why a command was rejected or failed.
	Reason  tmsproto.Reason
	Message string
}

func (d *Dispatcher) audit(ctx context.Context, ev CommandAudit) {
	if d.opts.Audit != nil {
		d.opts.Audit(context.WithoutCancel(ctx), ev)
	}
}

// Dispatcher owns the commands bucket. Register kinds, then Run.
type Dispatcher struct {
	opts   Options
	kinds  map[string]Kind
	wake   chan struct{}
	serial chan job // accepted non-concurrent commands, in order
	wg     sync.WaitGroup
}

type job struct {
	e       *entry
	resumed bool
}

// entry is the journal record of a command id.
type entry struct {
	ID       string          `cbor:"id"`
	Seq      uint64          `cbor:"seq"`
	Kind     string          `cbor:"kind"`
	Issued   int64           `cbor:"issued"`
	Expires  int64           `cbor:"expires,omitempty"`
	Body     cbor.RawMessage `cbor:"body"`
	State    tmsproto.State  `cbor:"state"`
	Progress int             `cbor:"progress,omitempty"`
	Stage    string          `cbor:"stage,omitempty"`
	Reason   tmsproto.Reason `cbor:"reason,omitempty"`
	Message  string          `cbor:"message,omitempty"`
	Result   cbor.RawMessage `cbor:"result,omitempty"`
	Updated  int64           `cbor:"updated"`
}

func (e *entry) command() *tmsproto.Command {
	return &tmsproto.Command{ID: e.ID, Seq: e.Seq, Kind: e.Kind, Issued: e.Issued, Expires: e.Expires, Body: e.Body}
}

func (e *entry) ack() tmsproto.Ack {
	return tmsproto.Ack{ID: e.ID, CmdSeq: e.Seq, Kind: e.Kind, State: e.State, Progress: e.Progress,
		Stage: e.Stage, Reason: e.Reason, Message: clip(e.Message), Result: e.Result}
}

// maxMessage bounds an ack's message: a validation error lists every violation, and a
// document with hundreds of them must not make an ack too large for the uplink.
const maxMessage = 4 << 10

func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	// Cut on a rune boundary: CBOR text must be valid UTF-8.
	return strings.ToValidUTF8(s[:maxMessage], "") + "… (truncated)"
}

// New creates the dispatcher's buckets.
func New(opts Options) (*Dispatcher, error) {
	if opts.ReplayWindow <= 0 {
		opts.ReplayWindow = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	err := opts.DB.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketCommands)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketInbox, bucketJournal, bucketSeqs} {
			if _, err := root.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	return &Dispatcher{opts: opts, kinds: map[string]Kind{}, wake: make(chan struct{}, 1),
		serial: make(chan job, MaxInbox)}, nil
}

// Register adds a command kind. Call before Run.
func (d *Dispatcher) Register(name string, k Kind) {
	if k.Check == nil {
		k.Check = func([]byte) (any, error) { return nil, nil }
	}
	d.kinds[name] = k
}

// Kinds lists the registered kinds.
func (d *Dispatcher) Kinds() []string {
	out := make([]string, 0, len(d.kinds))
	for k := range d.kinds {
		out = append(out, k)
	}
	return out
}

// Receive durably queues a raw down/cmd payload. The caller acknowledges the MQTT message only
// after Receive returned nil, so a crash never loses a command the broker thinks delivered.
func (d *Dispatcher) Receive(ctx context.Context, raw []byte) error {
	if len(raw) > tmsproto.MaxCommandSize {
		// Not worth keeping: reject at once, referring to it by hash.
		_, err := d.opts.Outbox.Append(ctx, tmsproto.StreamAck, "ack", tmsproto.Ack{
			Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonOversized,
			Message: fmt.Sprintf("%d bytes exceeds %d", len(raw), tmsproto.MaxCommandSize),
		})
		return err
	}
	err := d.opts.Commit.Do(ctx, func(tx *store.Tx) error {
		inbox := tx.Bucket(bucketCommands).Bucket(bucketInbox)
		if inbox.Stats().KeyN >= MaxInbox {
			return ErrInboxFull
		}
		key, err := inbox.NextSequence()
		if err != nil {
			return err
		}
		return inbox.Put(binary.BigEndian.AppendUint64(nil, key), raw)
	})
	if err != nil {
		return err
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run resumes interrupted commands, then processes the inbox until ctx ends, and waits for
// running handlers to return.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			// Jobs still queued at shutdown stay accepted in the journal and resume at the
			// next start.
			select {
			case <-ctx.Done():
				return
			case j := <-d.serial:
				if ctx.Err() != nil {
					return
				}
				d.execute(ctx, j.e, j.resumed)
			}
		}
	}()
	if err := d.resume(ctx); err != nil {
		return err
	}
	for {
		for {
			key, raw, err := d.nextInbox()
			if err != nil {
				return err
			}
			if raw == nil {
				break
			}
			if err := d.process(ctx, key, raw); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
	}
}

func (d *Dispatcher) nextInbox() (key, raw []byte, err error) {
	err = d.opts.DB.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketCommands).Bucket(bucketInbox).Cursor().First()
		if k != nil {
			key, raw = append([]byte(nil), k...), append([]byte(nil), v...)
		}
		return nil
	})
	return key, raw, err
}

// process takes one inbox item to its first durable state: rejected, a repeat answered from
// the journal, or accepted (and then started).
func (d *Dispatcher) process(ctx context.Context, key, raw []byte) error {
	log := d.opts.Logger
	cmd, err := d.opts.Verifier.Verify(raw)
	if err != nil {
		log.Warn("command rejected", "ref", tmsproto.Ref(raw), "reason", tmsproto.ReasonOf(err), "err", err)
		ferr := d.finishInbox(ctx, key, func(tx *store.Tx) error {
			_, err := d.opts.Outbox.AppendTx(tx, tmsproto.StreamAck, "ack", tmsproto.Ack{
				Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonOf(err), Message: err.Error(),
			})
			return err
		})
		if ferr == nil {
			d.audit(ctx, CommandAudit{Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonOf(err), Message: err.Error()})
		}
		return ferr
	}
	var start *entry
	var refused *CommandAudit
	err = d.finishInbox(ctx, key, func(tx *store.Tx) error {
		start, refused = nil, nil
		root := tx.Bucket(bucketCommands)
		journal, seqs := root.Bucket(bucketJournal), root.Bucket(bucketSeqs)
		if v := journal.Get([]byte(cmd.ID)); v != nil {
			var e entry
			if err := tmsproto.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("command: journal entry %q: %w", cmd.ID, err)
			}
			a := e.ack()
			a.Duplicate = true
			log.Info("command repeated, answering with the recorded state", "id", cmd.ID, "state", e.State)
			_, err := d.opts.Outbox.AppendTx(tx, tmsproto.StreamAck, "ack", a)
			return err
		}
		if replayed(root, seqs, cmd.Seq, d.opts.ReplayWindow) {
			log.Warn("command rejected", "id", cmd.ID, "reason", tmsproto.ReasonReplayedSeq, "seq", cmd.Seq)
			a := tmsproto.Ack{
				ID: cmd.ID, CmdSeq: cmd.Seq, Kind: cmd.Kind, Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected,
				Reason: tmsproto.ReasonReplayedSeq, Message: fmt.Sprintf("seq %d was already executed or is older than the replay window", cmd.Seq),
			}
			refused = &CommandAudit{ID: a.ID, Ref: a.Ref, Kind: a.Kind, Seq: a.CmdSeq, State: a.State, Reason: a.Reason, Message: a.Message}
			_, err := d.opts.Outbox.AppendTx(tx, tmsproto.StreamAck, "ack", a)
			return err
		}
		e := &entry{ID: cmd.ID, Seq: cmd.Seq, Kind: cmd.Kind, Issued: cmd.Issued, Expires: cmd.Expires,
			Body: cmd.Body, State: tmsproto.StateAccepted, Updated: d.opts.Now().UnixMilli()}
		kind, known := d.kinds[cmd.Kind]
		switch {
		case cmd.Expires != 0 && d.opts.Now().Unix() > cmd.Expires:
			e.State, e.Reason, e.Message = tmsproto.StateRejected, tmsproto.ReasonExpired,
				fmt.Sprintf("expired at %s", time.Unix(cmd.Expires, 0).UTC().Format(time.RFC3339))
		case !known:
			e.State, e.Reason, e.Message = tmsproto.StateRejected, tmsproto.ReasonUnknownKind,
				fmt.Sprintf("unknown command kind %q", cmd.Kind)
		default:
			if _, err := kind.Check(cmd.Body); err != nil {
				e.State, e.Reason, e.Message = tmsproto.StateRejected, reasonOf(err, tmsproto.ReasonInvalidBody), err.Error()
			}
		}
		if e.State == tmsproto.StateRejected {
			log.Warn("command rejected", "id", cmd.ID, "kind", cmd.Kind, "reason", e.Reason, "msg", e.Message)
			refused = &CommandAudit{ID: e.ID, Kind: e.Kind, Seq: e.Seq, State: e.State, Reason: e.Reason, Message: clip(e.Message)}
		} else {
			start = e
		}
		if err := rememberSeq(root, seqs, cmd.Seq, cmd.ID, d.opts.ReplayWindow); err != nil {
			return err
		}
		return d.putEntry(tx, e)
	})
	if err == nil && refused != nil {
		d.audit(ctx, *refused)
	}
	if err != nil || start == nil {
		return err
	}
	d.start(ctx, start, false)
	return nil
}

// finishInbox deletes the inbox item in the same transaction as fn's effects, so an item is
// either still waiting or fully handled.
func (d *Dispatcher) finishInbox(ctx context.Context, key []byte, fn func(*store.Tx) error) error {
	return d.opts.Commit.Do(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketCommands).Bucket(bucketInbox).Delete(key)
	})
}

// putEntry stores e and queues the ack reporting its state.
func (d *Dispatcher) putEntry(tx *store.Tx, e *entry) error {
	v, err := tmsproto.Marshal(e)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketCommands).Bucket(bucketJournal).Put([]byte(e.ID), v); err != nil {
		return err
	}
	_, err = d.opts.Outbox.AppendTx(tx, tmsproto.StreamAck, "ack", e.ack())
	return err
}

// transition moves a command to state, letting edit fill in details, with its ack.
func (d *Dispatcher) transition(ctx context.Context, cmd *tmsproto.Command, state tmsproto.State, edit func(*entry, *tmsproto.Ack)) error {
	return d.opts.Commit.Do(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		journal := tx.Bucket(bucketCommands).Bucket(bucketJournal)
		var e entry
		if err := tmsproto.Unmarshal(journal.Get([]byte(cmd.ID)), &e); err != nil {
			return fmt.Errorf("command: journal entry %q: %w", cmd.ID, err)
		}
		e.State, e.Updated = state, d.opts.Now().UnixMilli()
		a := e.ack()
		if edit != nil {
			edit(&e, &a)
		}
		v, err := tmsproto.Marshal(&e)
		if err != nil {
			return err
		}
		if err := journal.Put([]byte(e.ID), v); err != nil {
			return err
		}
		_, err = d.opts.Outbox.AppendTx(tx, tmsproto.StreamAck, "ack", a)
		return err
	})
}

// start hands an accepted command to the serial queue, or to its own goroutine when its kind
// is concurrent (stats.now must not wait behind a long OTA).
func (d *Dispatcher) start(ctx context.Context, e *entry, resumed bool) {
	if kind, ok := d.kinds[e.Kind]; ok && kind.Concurrent {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.execute(ctx, e, resumed)
		}()
		return
	}
	select {
	case d.serial <- job{e: e, resumed: resumed}:
	case <-ctx.Done():
	}
}

// execute takes an accepted command to its final state.
func (d *Dispatcher) execute(ctx context.Context, e *entry, resumed bool) {
	cmd := e.command()
	kind, known := d.kinds[cmd.Kind]
	log := d.opts.Logger.With("id", cmd.ID, "kind", cmd.Kind)
	fail := func(reason tmsproto.Reason, err error, result ...cbor.RawMessage) {
		log.Warn("command failed", "reason", reason, "err", err)
		var raw cbor.RawMessage
		if len(result) > 0 {
			raw = result[0]
		}
		if terr := d.transition(ctx, cmd, tmsproto.StateFailed, func(e *entry, a *tmsproto.Ack) {
			e.Reason, e.Message, e.Progress, e.Result = reason, err.Error(), 0, raw
			a.Reason, a.Message, a.Progress, a.Result = reason, err.Error(), 0, raw
		}); terr != nil {
			log.Error("recording command failure", "err", terr)
			return
		}
		d.audit(ctx, CommandAudit{ID: cmd.ID, Kind: cmd.Kind, Seq: cmd.Seq, State: tmsproto.StateFailed, Reason: reason, Message: clip(err.Error())})
	}
	if !known {
		fail(tmsproto.ReasonInterrupted, fmt.Errorf("kind %q is no longer supported", cmd.Kind))
		return
	}
	body, err := kind.Check(cmd.Body)
	if err != nil {
		fail(reasonOf(err, tmsproto.ReasonInvalidBody), err)
		return
	}
	if e.State != tmsproto.StateRunning {
		if err := d.transition(ctx, cmd, tmsproto.StateRunning, nil); err != nil {
			log.Error("recording command start", "err", err)
			return
		}
	}
	log.Info("command running", "resumed", resumed)
	req := &Request{Command: cmd, Body: body, Resumed: resumed, d: d, last: e.Progress, stage: e.Stage}
	result, err := safeRun(ctx, kind.Run, req)
	if ctx.Err() != nil && err != nil {
		// Stopped by shutdown, not by failure: the journal still says running, so the next
		// start resumes it.
		log.Info("command interrupted by shutdown; it resumes at the next start")
		return
	}
	var raw cbor.RawMessage
	if result != nil {
		var merr error
		if raw, merr = tmsproto.Marshal(result); merr != nil {
			fail(tmsproto.ReasonInternal, fmt.Errorf("encode result: %w", merr))
			return
		}
	}
	if err != nil {
		// A handler may return a result with its error (a self-test's per-device outcomes):
		// the TMS gets it on the failed ack.
		fail(reasonOf(err, tmsproto.ReasonExecFailed), err, raw)
		return
	}
	if err := d.transition(ctx, cmd, tmsproto.StateSucceeded, func(e *entry, a *tmsproto.Ack) {
		e.Result, a.Result, e.Progress, a.Progress = raw, raw, 100, 100
	}); err != nil {
		log.Error("recording command success", "err", err)
		return
	}
	log.Info("command succeeded")
	d.audit(ctx, CommandAudit{ID: cmd.ID, Kind: cmd.Kind, Seq: cmd.Seq, State: tmsproto.StateSucceeded})
	if kind.Then != nil {
		kind.Then()
	}
}

func safeRun(ctx context.Context, run func(context.Context, *Request) (any, error), req *Request) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return run(ctx, req)
}

// resume restarts commands the journal shows as accepted or running.
func (d *Dispatcher) resume(ctx context.Context) error {
	var pending []*entry
	err := d.opts.DB.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCommands).Bucket(bucketJournal).ForEach(func(k, v []byte) error {
			var e entry
			if err := tmsproto.Unmarshal(v, &e); err != nil {
				d.opts.Logger.Error("unreadable journal entry skipped", "id", string(k), "err", err)
				return nil
			}
			if !e.State.Final() {
				pending = append(pending, &e)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("command: resume: %w", err)
	}
	// The journal is keyed by id; run in the order the TMS numbered the commands.
	slices.SortFunc(pending, func(a, b *entry) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, e := range pending {
		d.opts.Logger.Info("resuming interrupted command", "id", e.ID, "kind", e.Kind, "state", e.State)
		d.start(ctx, e, true)
	}
	return nil
}

// The seqs bucket maps seq (8 bytes, big-endian) → id for the last ReplayWindow commands.
func replayed(root, seqs *bolt.Bucket, seq uint64, window int) bool {
	k := binary.BigEndian.AppendUint64(nil, seq)
	if seqs.Get(k) != nil {
		return true
	}
	if seqCount(root) < window {
		return false
	}
	oldest, _ := seqs.Cursor().First()
	return oldest != nil && seq < binary.BigEndian.Uint64(oldest)
}

// rememberSeq records seq and forgets the oldest beyond the window, with its journal entry:
// a repeat that old is refused as a replay anyway. A command that has not finished is never
// forgotten (its journal entry is its state); the window stretches until it finishes.
func rememberSeq(root, seqs *bolt.Bucket, seq uint64, id string, window int) error {
	if err := seqs.Put(binary.BigEndian.AppendUint64(nil, seq), []byte(id)); err != nil {
		return err
	}
	n := seqCount(root) + 1
	journal := root.Bucket(bucketJournal)
	for ; n > window; n-- {
		c := seqs.Cursor()
		_, oldID := c.First()
		if v := journal.Get(oldID); v != nil {
			var e entry
			if err := tmsproto.Unmarshal(v, &e); err == nil && !e.State.Final() {
				break
			}
			if err := journal.Delete(oldID); err != nil {
				return err
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return root.Put(keySeqCount, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// keySeqCount holds the number of keys in the seqs bucket: bbolt can only count by walking.
var keySeqCount = []byte("nseqs")

func seqCount(root *bolt.Bucket) int {
	if v := root.Get(keySeqCount); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

// Recorded returns the journal state of a command id (for tests and diagnostics).
func (d *Dispatcher) Recorded(id string) (tmsproto.Ack, bool, error) {
	var a tmsproto.Ack
	var ok bool
	err := d.opts.DB.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCommands).Bucket(bucketJournal).Get([]byte(id))
		if v == nil {
			return nil
		}
		var e entry
		if err := tmsproto.Unmarshal(v, &e); err != nil {
			return err
		}
		a, ok = e.ack(), true
		return nil
	})
	return a, ok, err
}
