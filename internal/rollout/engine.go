package rollout

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// Sender publishes a signed command to one terminal's down/cmd topic.
type Sender interface {
	Send(ctx context.Context, deviceID string, raw []byte) error
}

// AckSource delivers the acks of every terminal through one subscription. fn must be cheap:
// the engine only queues what it gets.
type AckSource interface {
	WatchAcks(ctx context.Context, fn func(deviceID string, ack tmsproto.Ack)) (stop func(), err error)
}

// Timing of the engine's bookkeeping.
const (
	// heartbeatEvery is the longest time between two commits of a running engine: how soon a
	// halt requested from another process is noticed.
	heartbeatEvery = time.Second
	// claimTTL is how long a silent engine keeps its claim on a rollout: a crashed one
	// blocks a resume for at most this long.
	claimTTL = 15 * time.Second
	// sendWorkers bounds the publishes waiting for their PUBACK at once.
	sendWorkers = 32
)

// Engine runs rollouts. One Engine may run several rollouts at once, each at most once.
type Engine struct {
	store    Store
	sender   Sender
	key      tmsclient.SignKey
	acks     AckSource
	log      *slog.Logger
	seqs     tmsclient.SeqSource
	progress func(Summary)
	runner   string

	mu     sync.Mutex
	active map[string]*run
}

// Option changes an Engine.
type Option func(*Engine)

// WithSeq takes command seqs from src (tmsctl: the signing key's seq file, shared with tmsctl
// send); default a tmsclient.MemorySeq, whose clock floor keeps seqs increasing across runs.
func WithSeq(src tmsclient.SeqSource) Option { return func(e *Engine) { e.seqs = src } }

// WithProgress calls fn with the rollout's summary after every step of the engine (often:
// throttle what it draws). fn runs on the engine's goroutine and must not block.
func WithProgress(fn func(Summary)) Option { return func(e *Engine) { e.progress = fn } }

// New makes an engine. sender, key and acks may be left empty for an engine that only
// creates rollouts and reads their status.
func New(store Store, sender Sender, key tmsclient.SignKey, acks AckSource, log *slog.Logger, opts ...Option) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	e := &Engine{
		store: store, sender: sender, key: key, acks: acks, log: log,
		runner: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), randomHex(4)),
		active: make(map[string]*run),
	}
	for _, o := range opts {
		o(e)
	}
	if e.seqs == nil {
		e.seqs = tmsclient.NewMemorySeq()
	}
	return e
}

// Create validates plan, fills in its defaults and stores it with every target pending.
func (e *Engine) Create(plan Plan) error {
	plan = plan.withDefaults()
	if err := plan.check(); err != nil {
		return err
	}
	return e.store.Create(plan, Meta{Created: time.Now()})
}

// Run runs a rollout until every terminal is final (nil), it halts (ErrHalted, after the
// terminals in flight are final), or ctx ends. Terminals left in flight by an earlier run get
// their stored command again, byte for byte. A halted rollout stays halted: see Resume.
func (e *Engine) Run(ctx context.Context, name string) (Summary, error) {
	return e.run(ctx, name, nil, false)
}

// Overrides change a plan on resumption; zero fields keep the plan's value.
type Overrides struct {
	MaxFailureRatio *float64
	MinSample       *int
	Pace            *Pace // a new pace starts its waves afresh
	Timeout         time.Duration
	MaxInFlight     int
}

// Resume clears a halt, applies o, and runs the rollout like Run.
func (e *Engine) Resume(ctx context.Context, name string, o Overrides) (Summary, error) {
	return e.run(ctx, name, &o, true)
}

// Stop asks the engine running the rollout (here or in another process) to halt, and marks
// it halted.
func (e *Engine) Stop(name, reason string) error { return e.store.RequestHalt(name, reason) }

// Status returns a rollout's summary and every terminal's state, from memory when this
// engine runs it, else from the store.
func (e *Engine) Status(name string) (Summary, []TerminalState, error) {
	e.mu.Lock()
	r := e.active[name]
	e.mu.Unlock()
	if r == nil {
		return LoadStatus(e.store, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	states := make([]TerminalState, len(r.recs))
	for i := range r.recs {
		states[i] = r.recs[i].TerminalState
	}
	return r.summary(), states, nil
}

// LoadStatus reads a rollout's summary and terminal states from a store.
func LoadStatus(s Store, name string) (Summary, []TerminalState, error) {
	sv, err := s.Load(name)
	if err != nil {
		return Summary{}, nil, err
	}
	sum := Summary{Name: sv.Plan.Name, Kind: sv.Plan.Kind, Total: len(sv.Records), Halted: sv.Meta.Halted,
		HaltReason: sv.Meta.HaltReason, Created: sv.Meta.Created, Started: sv.Meta.Started, Finished: sv.Meta.Finished}
	states := make([]TerminalState, len(sv.Records))
	for i, r := range sv.Records {
		states[i] = r.TerminalState
		sum.count(r.State, 1)
	}
	return sum, states, nil
}

func (s *Summary) count(st State, d int) {
	switch {
	case st == StatePending:
		s.Pending += d
	case st.InFlight():
		s.InFlight += d
	case st == StateSucceeded:
		s.Succeeded += d
	case st == StateFailed:
		s.Failed += d
	case st == StateTimedOut:
		s.TimedOut += d
	}
}

// run is one rollout being run. The engine's loop is its only writer; mu is for Status.
type run struct {
	mu    sync.Mutex
	plan  Plan
	meta  Meta
	recs  []Record
	byCmd map[string]int
	byRef map[string]int
	sum   Summary // counts kept up to date with recs
	next  int     // no record before it is pending

	dirty      map[int]bool
	metaDirty  bool
	lastCommit time.Time
	// minDeadline is at or before the earliest deadline in flight (zero: none).
	minDeadline time.Time

	started time.Time // this run
	sentRun int       // terminals first sent in this run (linear pace)
	// The current wave of an exponential pace: members not final yet, and how many of it are
	// still to be sent.
	wave     map[int]bool
	waveLeft int

	acks *ackQueue
}

func (e *Engine) run(ctx context.Context, name string, o *Overrides, resume bool) (Summary, error) {
	if e.acks == nil || e.sender == nil {
		return Summary{}, errors.New("rollout: an engine without sender or ack source cannot run")
	}
	r, err := e.open(name, o, resume, time.Now())
	if err != nil {
		return Summary{}, err
	}
	defer e.close(r)
	stop, err := e.acks.WatchAcks(ctx, r.acks.push)
	if err != nil {
		return r.lockedSummary(), fmt.Errorf("rollout %s: ack watch: %w", name, err)
	}
	defer stop()
	if err := e.resend(ctx, r, time.Now()); err != nil {
		return r.lockedSummary(), e.interrupted(name, err)
	}
	e.log.Info("rollout running", "rollout", name, "kind", r.plan.Kind, "targets", len(r.recs), "pace", r.plan.Pace.String(),
		"pending", r.sum.Pending, "inFlight", r.sum.InFlight)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, done, err := e.step(ctx, r, time.Now())
		if e.progress != nil {
			e.progress(r.lockedSummary())
		}
		if err != nil {
			return r.lockedSummary(), e.interrupted(name, err)
		}
		if done {
			sum := r.lockedSummary()
			if sum.Halted {
				return sum, fmt.Errorf("%w: %s", ErrHalted, sum.HaltReason)
			}
			return sum, nil
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			return r.lockedSummary(), e.interrupted(name, ctx.Err())
		case <-r.acks.wake:
		case <-timer.C:
		}
	}
}

func (e *Engine) interrupted(name string, err error) error {
	return fmt.Errorf("rollout %s interrupted (resume continues it): %w", name, err)
}

// open claims the rollout and builds its run. Records in flight get a new deadline, counted
// from the re-send that follows.
func (e *Engine) open(name string, o *Overrides, resume bool, now time.Time) (*run, error) {
	e.mu.Lock()
	if _, ok := e.active[name]; ok {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %s runs in this engine", ErrBusy, name)
	}
	e.active[name] = nil // reserved while it is built; Status reads the store meanwhile
	e.mu.Unlock()
	r, err := e.build(name, o, resume, now)
	e.mu.Lock()
	if err != nil {
		delete(e.active, name)
	} else {
		e.active[name] = r
	}
	e.mu.Unlock()
	return r, err
}

func (e *Engine) build(name string, o *Overrides, resume bool, now time.Time) (*run, error) {
	sv, err := e.store.Claim(name, e.runner, now, claimTTL)
	if err != nil {
		return nil, err
	}
	r := &run{plan: sv.Plan, meta: sv.Meta, recs: sv.Records, byCmd: map[string]int{}, byRef: map[string]int{},
		dirty: map[int]bool{}, wave: map[int]bool{}, started: now, next: len(sv.Records), acks: newAckQueue()}
	var change Change
	if o != nil {
		if o.MaxFailureRatio != nil {
			r.plan.MaxFailureRatio = *o.MaxFailureRatio
		}
		if o.MinSample != nil {
			r.plan.MinSample = *o.MinSample
		}
		if o.Pace != nil {
			r.plan.Pace = *o.Pace
			r.meta.Waves, r.meta.WaveAt = 0, time.Time{}
		}
		if o.Timeout > 0 {
			r.plan.Timeout = o.Timeout
		}
		if o.MaxInFlight > 0 {
			r.plan.MaxInFlight = o.MaxInFlight
		}
		if err := r.plan.check(); err != nil {
			return nil, err
		}
		change.Plan = &r.plan
	}
	if resume {
		r.meta.Halted, r.meta.HaltReason = false, ""
		change.ClearHaltRequest = true
	}
	r.sum = Summary{Name: r.plan.Name, Kind: r.plan.Kind, Total: len(r.recs)}
	for i := range r.recs {
		rec := &r.recs[i]
		r.sum.count(rec.State, 1)
		if rec.State == StatePending && i < r.next {
			r.next = i
		}
		if rec.Command != "" {
			r.byCmd[rec.Command] = i
			r.byRef[rec.Ref] = i
		}
		if rec.State.InFlight() {
			rec.Deadline = now.Add(r.plan.Timeout)
			r.wave[i] = true
			change.Records = append(change.Records, *rec)
		}
	}
	if len(r.wave) > 0 {
		r.minDeadline = now.Add(r.plan.Timeout)
	}
	change.Meta = &r.meta
	halt, err := e.store.Commit(name, change)
	if err != nil {
		return nil, err
	}
	r.lastCommit = now
	r.adoptHalt(halt)
	return r, nil
}

// close gives the rollout up: a last commit releases the claim so that a resume need not
// wait for it to lapse.
func (e *Engine) close(r *run) {
	r.mu.Lock()
	r.meta.Runner = ""
	_, err := e.store.Commit(r.plan.Name, r.change())
	r.mu.Unlock()
	if err != nil {
		e.log.Warn("rollout: releasing the claim failed", "rollout", r.plan.Name, "err", err)
	}
	e.mu.Lock()
	delete(e.active, r.plan.Name)
	e.mu.Unlock()
}

// resend publishes the stored command of every terminal in flight again: whatever it got
// before, the agent answers a repeat of the same bytes with its current or final ack.
func (e *Engine) resend(ctx context.Context, r *run, now time.Time) error {
	r.mu.Lock()
	var items []sendItem
	for i := range r.recs {
		if r.recs[i].State.InFlight() {
			items = append(items, sendItem{device: r.recs[i].ID, raw: r.recs[i].Raw})
		}
	}
	r.mu.Unlock()
	if len(items) > 0 {
		e.log.Info("rollout: re-sending the stored commands in flight", "rollout", r.plan.Name, "terminals", len(items))
	}
	return e.publish(ctx, items)
}

// step does everything due at now: takes in the acks received, times out what is overdue,
// applies the halting rule, commits, then signs, commits and publishes the next terminals the
// pace allows. It returns when to step again at the latest (acks wake the loop earlier), and
// done once nothing more will happen.
func (e *Engine) step(ctx context.Context, r *run, now time.Time) (next time.Time, done bool, err error) {
	r.mu.Lock()
	for _, a := range r.acks.take() {
		e.apply(r, a, now)
	}
	if !r.minDeadline.IsZero() && !now.Before(r.minDeadline) {
		e.expire(r, now)
	}
	e.checkHalt(r)
	done = r.sum.InFlight == 0 && (r.sum.Pending == 0 || r.meta.Halted)
	if done {
		if !r.meta.Halted && r.meta.Finished.IsZero() {
			r.meta.Finished, r.metaDirty = now, true
			e.log.Info("rollout finished", "rollout", r.plan.Name, "succeeded", r.sum.Succeeded, "failed", r.sum.Failed, "timedOut", r.sum.TimedOut)
		}
		r.meta.Runner = ""
		r.metaDirty = true
	}
	if len(r.dirty) > 0 || r.metaDirty || now.Sub(r.lastCommit) >= heartbeatEvery {
		if err := e.commit(r, now); err != nil {
			r.mu.Unlock()
			return time.Time{}, false, err
		}
	}
	if done {
		r.mu.Unlock()
		return time.Time{}, true, nil
	}
	batch := r.due(now)
	if len(batch) == 0 {
		next = r.nextWake(now)
		r.mu.Unlock()
		return next, false, nil
	}
	seqs, err := e.nextSeqs(r, batch)
	if err != nil {
		r.mu.Unlock()
		return time.Time{}, false, err
	}
	items := make([]sendItem, 0, len(batch))
	for k, i := range batch {
		if err := e.sign(r, i, seqs[k], now); err != nil {
			r.mu.Unlock()
			return time.Time{}, false, err
		}
		items = append(items, sendItem{device: r.recs[i].ID, raw: r.recs[i].Raw})
	}
	if r.meta.Started.IsZero() {
		r.meta.Started = now
	}
	r.meta.KeyID = e.key.ID
	// Committed before the first byte goes out: a crash from here on leaves terminals in
	// state sent with the very bytes a resume sends again.
	if err := e.commit(r, now); err != nil {
		r.mu.Unlock()
		return time.Time{}, false, err
	}
	next = r.nextWake(now)
	r.mu.Unlock()
	if err := e.publish(ctx, items); err != nil {
		return time.Time{}, false, err
	}
	return next, false, nil
}

// change collects what is dirty.
func (r *run) change() Change {
	c := Change{Meta: &r.meta}
	for i := range r.dirty {
		c.Records = append(c.Records, r.recs[i])
	}
	return c
}

func (e *Engine) commit(r *run, now time.Time) error {
	r.meta.Heartbeat = now
	halt, err := e.store.Commit(r.plan.Name, r.change())
	if err != nil {
		return fmt.Errorf("rollout %s: commit: %w", r.plan.Name, err)
	}
	clear(r.dirty)
	r.metaDirty = false
	r.lastCommit = now
	if r.adoptHalt(halt) {
		e.log.Warn("rollout halted on request", "rollout", r.plan.Name, "reason", halt)
	}
	return nil
}

// adoptHalt takes in a halt requested from outside; the store has recorded it already.
func (r *run) adoptHalt(reason string) bool {
	if reason == "" || r.meta.Halted {
		return false
	}
	r.meta.Halted, r.meta.HaltReason = true, reason
	r.sum.Halted, r.sum.HaltReason = true, reason
	return true
}

func (r *run) summary() Summary {
	s := r.sum
	s.Halted, s.HaltReason = r.meta.Halted, r.meta.HaltReason
	s.Created, s.Started, s.Finished = r.meta.Created, r.meta.Started, r.meta.Finished
	return s
}

func (r *run) lockedSummary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.summary()
}

func (r *run) setState(i int, st State) {
	rec := &r.recs[i]
	r.sum.count(rec.State, -1)
	r.sum.count(st, 1)
	rec.State = st
	r.dirty[i] = true
	if st.Final() {
		delete(r.wave, i)
	}
}

// ackState maps the agent's lifecycle onto a rollout's.
func ackState(s tmsproto.State) (State, bool) {
	switch s {
	case tmsproto.StateAccepted:
		return StateAccepted, true
	case tmsproto.StateRunning:
		return StateRunning, true
	case tmsproto.StateSucceeded:
		return StateSucceeded, true
	case tmsproto.StateFailed, tmsproto.StateRejected:
		return StateFailed, true
	}
	return "", false
}

// apply takes in one ack. Acks of other commands, of another device, or that would move a
// terminal backwards are ignored; a final ack replaces timed_out, being the truth.
func (e *Engine) apply(r *run, a deviceAck, now time.Time) {
	i, ok := r.byCmd[a.ack.ID]
	if !ok || a.ack.ID == "" {
		if i, ok = r.byRef[a.ack.Ref]; !ok || a.ack.Ref == "" {
			return
		}
	}
	rec := &r.recs[i]
	if rec.ID != a.device {
		e.log.Warn("rollout: ack of a command from another device, ignored", "rollout", r.plan.Name, "device", a.device, "target", rec.ID)
		return
	}
	st, ok := ackState(a.ack.State)
	if !ok || st.rank() < rec.State.rank() || rec.State == StateSucceeded || rec.State == StateFailed {
		return
	}
	if st == rec.State && st != StateRunning {
		return
	}
	switch st {
	case StateRunning:
		if st == rec.State && a.ack.Progress == rec.Progress && a.ack.Stage == rec.Stage {
			return
		}
		rec.Progress, rec.Stage = a.ack.Progress, a.ack.Stage
	case StateSucceeded:
		rec.Progress, rec.Reason, rec.Detail = 100, "", a.ack.Message
	case StateFailed:
		rec.Reason, rec.Detail = string(a.ack.Reason), a.ack.Message
		if a.ack.Stage != "" {
			rec.Stage = a.ack.Stage
		}
		if a.ack.State == tmsproto.StateRejected {
			rec.Detail = strings.TrimSuffix("rejected: "+a.ack.Message, ": ")
		}
	}
	if st.Final() {
		rec.DoneAt = now
		if st == StateFailed {
			e.log.Debug("rollout: terminal failed", "rollout", r.plan.Name, "device", rec.ID, "reason", rec.Reason)
		}
	}
	r.setState(i, st)
}

// expire times out the terminals in flight past their deadline.
func (e *Engine) expire(r *run, now time.Time) {
	var earliest time.Time
	for i := range r.recs {
		rec := &r.recs[i]
		if !rec.State.InFlight() {
			continue
		}
		if now.Before(rec.Deadline) {
			if earliest.IsZero() || rec.Deadline.Before(earliest) {
				earliest = rec.Deadline
			}
			continue
		}
		rec.Reason = "timeout"
		rec.Detail = fmt.Sprintf("no final ack within %v (last heard: %s)", r.plan.Timeout, rec.State)
		rec.DoneAt = now
		r.setState(i, StateTimedOut)
	}
	r.minDeadline = earliest
}

// checkHalt applies the halting rule: once MinSample terminals are final, a share of failed
// and timed out above MaxFailureRatio halts. It is committed before any further send.
func (e *Engine) checkHalt(r *run) {
	final := r.sum.Final()
	if r.meta.Halted || final == 0 || final < r.plan.MinSample {
		return
	}
	bad := r.sum.Failed + r.sum.TimedOut
	ratio := float64(bad) / float64(final)
	if ratio <= r.plan.MaxFailureRatio {
		return
	}
	r.meta.Halted = true
	r.meta.HaltReason = fmt.Sprintf("%d of %d finished failed or timed out (%.3g > %.3g)", bad, final, ratio, r.plan.MaxFailureRatio)
	r.metaDirty = true
	e.log.Warn("rollout halted", "rollout", r.plan.Name, "reason", r.meta.HaltReason, "inFlight", r.sum.InFlight, "pending", r.sum.Pending)
}

// due picks the pending terminals the pace and the in-flight bound allow now, in plan order.
func (r *run) due(now time.Time) []int {
	if r.meta.Halted || r.sum.Pending == 0 {
		return nil
	}
	n := min(r.plan.MaxInFlight-r.sum.InFlight, r.sum.Pending)
	p := r.plan.Pace
	switch {
	case p.Linear():
		allowed := int(math.Floor(now.Sub(r.started).Minutes()*p.PerMinute+1e-9)) + 1
		n = min(n, allowed-r.sentRun)
	case p.Exponential():
		if r.waveLeft == 0 {
			if len(r.wave) > 0 || (r.meta.Waves > 0 && now.Before(r.meta.WaveAt.Add(p.Every))) {
				return nil
			}
			r.waveLeft = p.waveSize(r.meta.Waves)
			r.meta.Waves++
			r.meta.WaveAt = now
			r.metaDirty = true
		}
		n = min(n, r.waveLeft)
	}
	if n <= 0 {
		return nil
	}
	out := make([]int, 0, n)
	for i := r.next; i < len(r.recs) && len(out) < n; i++ {
		if r.recs[i].State == StatePending {
			out = append(out, i)
		}
	}
	return out
}

// nextWake is when the loop must look again without an ack: the next send the pace allows,
// the earliest deadline, the next heartbeat.
func (r *run) nextWake(now time.Time) time.Time {
	next := now.Add(heartbeatEvery)
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	earlier(r.minDeadline)
	if !r.meta.Halted && r.sum.Pending > 0 && r.sum.InFlight < r.plan.MaxInFlight {
		p := r.plan.Pace
		switch {
		case p.Linear():
			at := r.started.Add(time.Duration(math.Ceil(float64(r.sentRun) / p.PerMinute * float64(time.Minute))))
			earlier(at)
		case p.Exponential():
			if r.waveLeft == 0 && len(r.wave) == 0 {
				earlier(r.meta.WaveAt.Add(p.Every))
			}
		}
	}
	return next
}

// BatchSeqSource is a SeqSource that can also number the commands of many devices at once;
// the engine uses it when its source has it. A source persisted in a file (tmsclient.SeqFile
// rewrites the whole file for every Next) then writes once per batch instead of once per
// terminal.
type BatchSeqSource interface {
	NextBatch(deviceIDs []string) ([]uint64, error)
}

// nextSeqs numbers the commands of the batch's terminals.
func (e *Engine) nextSeqs(r *run, batch []int) ([]uint64, error) {
	devs := make([]string, len(batch))
	for k, i := range batch {
		devs[k] = r.recs[i].ID
	}
	if bs, ok := e.seqs.(BatchSeqSource); ok {
		seqs, err := bs.NextBatch(devs)
		if err == nil && len(seqs) != len(devs) {
			err = fmt.Errorf("%d seqs for %d devices", len(seqs), len(devs))
		}
		if err != nil {
			return nil, fmt.Errorf("rollout: command seqs: %w", err)
		}
		return seqs, nil
	}
	seqs := make([]uint64, len(devs))
	for k, dev := range devs {
		seq, err := e.seqs.Next(dev)
		if err != nil {
			return nil, fmt.Errorf("rollout: command seq for %s: %w", dev, err)
		}
		seqs[k] = seq
	}
	return seqs, nil
}

// sign signs record i's command and moves it to sent, deadline running.
func (e *Engine) sign(r *run, i int, seq uint64, now time.Time) error {
	if e.key.ID == "" || len(e.key.Key) != ed25519.PrivateKeySize {
		return errors.New("rollout: no signing key")
	}
	rec := &r.recs[i]
	body := r.plan.Body
	if len(body) == 0 {
		body = []byte{0xa0} // {}
	}
	cmd := tmsproto.Command{ID: randomHex(16), Seq: seq, Kind: r.plan.Kind, Issued: now.Unix(),
		Expires: now.Add(r.plan.Expires).Unix() + 1, Body: body}
	raw, err := tmsproto.SignCommand(e.key.Key, e.key.ID, cmd)
	if err != nil {
		return fmt.Errorf("rollout: sign for %s: %w", rec.ID, err)
	}
	if len(raw) > tmsproto.MaxCommandSize {
		return fmt.Errorf("%w: signed command of %d bytes exceeds %d", ErrInvalidPlan, len(raw), tmsproto.MaxCommandSize)
	}
	rec.Command, rec.Raw, rec.Ref = cmd.ID, raw, tmsproto.Ref(raw)
	rec.SentAt, rec.Deadline = now, now.Add(r.plan.Timeout)
	r.byCmd[rec.Command], r.byRef[rec.Ref] = i, i
	if r.minDeadline.IsZero() || rec.Deadline.Before(r.minDeadline) {
		r.minDeadline = rec.Deadline
	}
	r.setState(i, StateSent)
	r.wave[i] = true
	r.sentRun++
	if r.waveLeft > 0 {
		r.waveLeft--
	}
	for r.next < len(r.recs) && r.recs[r.next].State != StatePending {
		r.next++
	}
	return nil
}

type sendItem struct {
	device string
	raw    []byte
}

// publish sends items with a few publishes in flight at once; it returns the first error
// after every started publish has returned.
func (e *Engine) publish(ctx context.Context, items []sendItem) error {
	if len(items) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		work     = make(chan sendItem)
	)
	for range min(sendWorkers, len(items)) {
		wg.Go(func() {
			for it := range work {
				if err := e.sender.Send(ctx, it.device, it.raw); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("send to %s: %w", it.device, err); cancel() })
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// deviceAck is an ack as received.
type deviceAck struct {
	device string
	ack    tmsproto.Ack
}

// ackQueue hands acks from the watch's goroutines to the engine's loop without ever
// blocking the watch.
type ackQueue struct {
	mu   sync.Mutex
	q    []deviceAck
	wake chan struct{}
}

func newAckQueue() *ackQueue { return &ackQueue{wake: make(chan struct{}, 1)} }

func (q *ackQueue) push(device string, a tmsproto.Ack) {
	q.mu.Lock()
	q.q = append(q.q, deviceAck{device: device, ack: a})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *ackQueue) take() []deviceAck {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.q
	q.q = nil
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return hex.EncodeToString(b)
}
