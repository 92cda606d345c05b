package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
)

// The ECR exchange log's rotation: about 6 MiB on the terminal at most, days of a busy till.
const (
	ecrLogMaxSize = 1 << 20
	ecrLogKeep    = 5
)

// ECRLog is the exchange log of the cash-register API: the API records every request and
// answer in it.
func (a *Agent) ECRLog() *ecrlog.Log { return a.ecrLog }

func openECRLog(cfg *config.Config, log *slog.Logger) (*ecrlog.Log, error) {
	l, err := ecrlog.Open(filepath.Join(cfg.DataDir, "ecr.log"), ecrLogMaxSize, ecrLogKeep,
		ecrlog.Options{Logger: log.With("svc", "ecrlog")})
	if err != nil {
		return nil, fmt.Errorf("ecr exchange log: %w", err)
	}
	return l, nil
}

// logSource is a log kept in a file here, and where its lines go up.
type logSource struct {
	read   LogReader
	stream string
	// settle keeps the newest lines for the next scheduled upload: slog stamps a line before
	// writing it, so a line stamped just before a read may reach the file just after it. The
	// ECR log needs none (its ReadRange waits for every line stamped before the call).
	settle time.Duration
}

const agentLogSettle = 2 * time.Second

var errNoAgentLog = errors.New("the agent log is not kept in a file on this terminal")

// logSource finds a log by its logs.upload name.
func (a *Agent) logSource(name string) (logSource, error) {
	switch name {
	case "agent":
		if a.logs == nil {
			return logSource{}, errNoAgentLog
		}
		return logSource{read: a.logs, stream: tmsproto.StreamLogAgent, settle: agentLogSettle}, nil
	case "ecr":
		if a.ecrLog == nil {
			return logSource{}, errors.New("the ECR exchange log is not open")
		}
		return logSource{read: a.ecrLog, stream: tmsproto.StreamLogECR}, nil
	}
	return logSource{}, fmt.Errorf("log: %q is not kept on this terminal (known: %s)", name, knownLogs)
}

const knownLogs = "agent, ecr"

// logBatcher cuts lines into log.batch records of at most maxBatch bytes of lines each.
type logBatcher struct {
	emit    func(lines []string, batch int) error
	lines   []string
	size    int
	batches int
	total   int
}

func (b *logBatcher) add(line []byte) error {
	if len(line) > maxBatch {
		line = line[:maxBatch]
	}
	if b.size+len(line) > maxBatch {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.lines = append(b.lines, string(line))
	b.size += len(line)
	b.total++
	return nil
}

func (b *logBatcher) flush() error {
	if len(b.lines) == 0 {
		return nil
	}
	b.batches++
	err := b.emit(b.lines, b.batches)
	b.lines, b.size = nil, 0
	return err
}

// Scheduled uploads keep their progress in bucket "logupload": the time of the last run
// (the schedule) and, per log, the end of what has gone up (the mark). A batch and the mark
// after it commit in one transaction, so a power cut neither loses nor repeats a period;
// only when a run is cut between two batches does the next one repeat the line(s) of the
// boundary's timestamp (one line in practice).
var (
	bucketLogUpload = []byte("logupload")
	keyLastRun      = []byte("last")
)

func markKey(name termconfig.LogStream) []byte { return []byte("mark/" + string(name)) }

func putTime(tx *store.Tx, key []byte, t time.Time) error {
	return tx.Bucket(bucketLogUpload).Put(key, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())))
}

// getTime reads a time; missing or damaged is zero: everything kept goes up again, a repeat
// rather than a loss.
func (a *Agent) getTime(key []byte) (time.Time, error) {
	var t time.Time
	err := a.db.View(func(tx *store.Tx) error {
		if b := tx.Bucket(bucketLogUpload); b != nil {
			if v := b.Get(key); len(v) == 8 {
				t = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
		}
		return nil
	})
	return t, err
}

// runLogUpload uploads the logs on the schedule of the active terminal configuration
// (tms.logUpload), following its changes.
func (a *Agent) runLogUpload(ctx context.Context) error {
	last, err := a.openLogUpload(ctx)
	if err != nil {
		return err
	}
	updates, cancel := a.term.Subscribe()
	defer cancel()
	s := uploadSchedule{now: time.Now, after: time.After, loc: time.Local, run: a.uploadScheduled,
		log: a.log.With("svc", "logupload")}
	s.loop(ctx, updates, last)
	return nil
}

// openLogUpload creates the bucket and returns the time of the last scheduled run.
func (a *Agent) openLogUpload(ctx context.Context) (time.Time, error) {
	if err := a.commit.Do(ctx, func(tx *store.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLogUpload)
		return err
	}); err != nil {
		return time.Time{}, fmt.Errorf("log upload: %w", err)
	}
	last, err := a.getTime(keyLastRun)
	if err != nil {
		return time.Time{}, fmt.Errorf("log upload: %w", err)
	}
	return last, nil
}

// uploadScheduled sends, for each scheduled log kept in a file here, the lines since its mark,
// and records the run. "pos" and "audit" go up record by record as they happen; the agent
// log only when it is kept in a file.
func (a *Agent) uploadScheduled(ctx context.Context, sched termconfig.LogUploadSchedule, at time.Time) error {
	for _, name := range sched.Streams {
		if name != termconfig.LogStreamECR && name != termconfig.LogStreamAgent {
			continue
		}
		src, err := a.logSource(string(name))
		if errors.Is(err, errNoAgentLog) {
			continue
		}
		if err != nil {
			return err
		}
		if err := a.uploadSince(ctx, name, src, at.Add(-src.settle)); err != nil {
			return fmt.Errorf("log %s: %w", name, err)
		}
	}
	return a.commit.Do(ctx, func(tx *store.Tx) error { return putTime(tx, keyLastRun, at) })
}

// uploadSince sends the lines of one log from its mark to end and moves the mark to end.
func (a *Agent) uploadSince(ctx context.Context, name termconfig.LogStream, src logSource, end time.Time) error {
	from, err := a.getTime(markKey(name))
	if err != nil {
		return err
	}
	if !end.After(from) {
		return nil // the clock went back past the mark: wait for it
	}
	final, marked := false, false
	b := logBatcher{emit: func(lines []string, batch int) error {
		mark := end
		if final {
			marked = true
		} else {
			// Resume at the last line sent: if the run stops here, that line is repeated and
			// nothing is lost.
			t, ok := logging.LineTime([]byte(lines[len(lines)-1]))
			if !ok {
				return a.appendBatch(ctx, src.stream, lines, batch, nil)
			}
			mark = t
		}
		return a.appendBatch(ctx, src.stream, lines, batch, func(tx *store.Tx) error { return putTime(tx, markKey(name), mark) })
	}}
	err = src.read.ReadRange(from, end, b.add)
	if err == nil {
		final = true
		err = b.flush()
	}
	if err == nil && !marked { // no line in the period
		err = a.commit.Do(ctx, func(tx *store.Tx) error { return putTime(tx, markKey(name), end) })
	}
	if err != nil {
		return err
	}
	if b.total > 0 {
		a.log.Info("scheduled log upload", "log", name, "lines", b.total, "batches", b.batches)
	}
	return nil
}

// appendBatch queues one scheduled log.batch; also, when given, writes in the same
// transaction (the mark after the batch).
func (a *Agent) appendBatch(ctx context.Context, stream string, lines []string, batch int, also func(*store.Tx) error) error {
	return a.commit.Do(ctx, func(tx *store.Tx) error {
		if _, err := a.Outbox.AppendTx(tx, stream, "log.batch", map[string]any{
			"scheduled": true, "batch": batch, "lines": lines,
		}); err != nil {
			return err
		}
		if also == nil {
			return nil
		}
		return also(tx)
	})
}

// Scheduling.
const (
	// maxScheduleWait bounds each wait, so that a step of the wall clock (the time set at boot
	// on a terminal without a battery-backed clock) moves the schedule within a minute.
	maxScheduleWait = time.Minute
	// uploadRetry is the pause after a failed run (outbox full, database error).
	uploadRetry = time.Minute
	// dailyGrace is how late a daily upload may still start: a terminal switched on half an
	// hour after dailyAt sends it then; one switched on at noon waits for the next night,
	// because dailyAt is chosen to keep uploads out of trading hours.
	dailyGrace = time.Hour
)

type uploadSchedule struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	loc   *time.Location
	run   func(ctx context.Context, s termconfig.LogUploadSchedule, at time.Time) error
	log   *slog.Logger
}

// loop runs uploads when nextLogUpload says they are due, re-reading the schedule from each
// configuration that becomes active. last is the time of the last run.
func (s *uploadSchedule) loop(ctx context.Context, updates <-chan *termconfig.Document, last time.Time) {
	var sched termconfig.LogUploadSchedule
	var retryAt time.Time
	for {
		now := s.now()
		next, ok := nextLogUpload(sched, last, now, s.loc)
		if ok && now.Before(retryAt) {
			next = retryAt
		}
		var wake <-chan time.Time
		if ok {
			if !next.After(now) {
				if err := s.run(ctx, sched, now); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.log.Warn("scheduled log upload failed", "err", err, "retry_in", uploadRetry)
					retryAt = now.Add(uploadRetry)
				} else {
					last, retryAt = now, time.Time{}
				}
				continue
			}
			wake = s.after(min(next.Sub(now), maxScheduleWait))
		}
		select {
		case <-ctx.Done():
			return
		case doc, open := <-updates:
			if !open {
				return
			}
			sched = doc.TMS.LogUpload
			sched.Streams = slices.Clone(sched.Streams)
			retryAt = time.Time{}
		case <-wake:
		}
	}
}

// nextLogUpload is when the next scheduled upload is due, given the last run (zero: never)
// and the time now; false when nothing is scheduled. A time not after now means at once.
//
// interval: intervalSec after the last run; at once when there was none, when it is overdue
// (the terminal was off) or when the last run lies in the future (the clock went back).
// daily: at dailyAt local time, at most once per slot (a slot is served when the last run is
// not before it, which also keeps the repeated hour at the end of summer time from running
// it twice); a slot missed by more than dailyGrace is left for the next day.
func nextLogUpload(s termconfig.LogUploadSchedule, last, now time.Time, loc *time.Location) (time.Time, bool) {
	switch s.Mode {
	case termconfig.LogUploadInterval:
		if s.IntervalSec == 0 {
			return time.Time{}, false
		}
		if last.IsZero() || last.After(now) {
			return now, true
		}
		return last.Add(time.Duration(s.IntervalSec) * time.Second), true
	case termconfig.LogUploadDaily:
		at, err := time.Parse("15:04", s.DailyAt)
		if err != nil {
			return time.Time{}, false
		}
		y, m, d := now.In(loc).Date()
		// Yesterday's slot may still be within its grace just after midnight.
		for day := d - 1; day <= d+2; day++ {
			slot := time.Date(y, m, day, at.Hour(), at.Minute(), 0, 0, loc)
			if !last.IsZero() && !last.Before(slot) {
				continue // served
			}
			if !now.Before(slot.Add(dailyGrace)) {
				continue // missed
			}
			return slot, true
		}
	}
	return time.Time{}, false
}
