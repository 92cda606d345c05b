package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/tmsclient"
)

// stormBucketSize is the storm timeline's resolution.
const stormBucketSize = 100 * time.Millisecond

// month is what the idle figure is extrapolated to.
const month = 30 * 24 * time.Hour

// ErrNoBroker is returned by scenarios that need to control the broker.
var ErrNoBroker = errors.New("needs a local broker (-mosquitto)")

// steady: everyone connected, then -duration of normal life.
func (s *sim) steady(ctx context.Context) error {
	c := s.cfg
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	snap0, u0, err := s.fullSnapshot(ctx)
	if err != nil {
		return err
	}
	b0 := s.brokerUsage()
	if err := sleep(ctx, c.Duration); err != nil {
		return err
	}
	snap1, u1, err := s.fullSnapshot(ctx)
	if err != nil {
		return err
	}
	window := snap1.At.Sub(snap0.At).Seconds()
	tr := trafficOf(snap1.Traffic).sub(trafficOf(snap0.Traffic))
	r := &steadyReport{
		Terminals: snap1.Terminals, WindowSec: window, Connected: snap1.Connected,
		MsgsUpPerSec:    rate(snap1.Published-snap0.Published, window),
		AckedPerSec:     rate(snap1.Acked-snap0.Acked, window),
		MsgsDownPerSec:  rate(snap1.Commands-snap0.Commands, window),
		Connects:        snap1.Connects - snap0.Connects,
		ConnectFailures: snap1.ConnectFailures - snap0.ConnectFailures,
		Traffic:         tr, PerTerminal: tr.per(snap1.Terminals),
		SinceStart: trafficOf(snap1.Traffic).per(snap1.Terminals),
		Errors:     snap1.Errors, Processes: u1,
		CPUSec: cpuOf(u1) - cpuOf(u0),
		Broker: s.brokerUsage(),
	}
	r.CPUCores = r.CPUSec / max(window, 1e-9)
	if b0 != nil && r.Broker != nil {
		r.BrokerCPUSec = r.Broker.CPUSec() - b0.CPUSec()
	}
	s.rep.Steady = r
	if snap1.Connected != c.N {
		s.rep.fail("steady: %d of %d terminals connected at the end", snap1.Connected, c.N)
	}
	s.log.Info("steady", "window", time.Duration(window*float64(time.Second)).Round(time.Millisecond),
		"connected", snap1.Connected, "up msg/s", r.MsgsUpPerSec, "cpu cores", r.CPUCores)
	return nil
}

func rate(n uint64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// cpuOf sums the CPU time of the processes.
func cpuOf(us []procUsage) float64 {
	var sum float64
	for _, u := range us {
		sum += u.CPUSec()
	}
	return sum
}

// segmentsCounted is wire.SegmentsCounted, a variable so that a test can play a machine
// without segment counters.
var segmentsCounted = wire.SegmentsCounted

// idleStreams are the streams whose seqs the idle window counts.
var idleStreams = []string{tmsproto.StreamStats, tmsproto.StreamEvent, tmsproto.StreamAck}

// idle measures exactly the traffic of an idle window: it starts once every terminal is
// connected and has sent its first statistics, so the connection set-up and start-up records
// are outside it.
func (s *sim) idle(ctx context.Context) error {
	c := s.cfg
	// Without segment counts the figure would be payload only, a third too low: refuse.
	if err := segmentsCounted(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	statsEvery := orDefault(c.StatsInterval, defaultStatsInterval)
	deadline := time.Now().Add(c.Timeout)
	var rows0 []terminalRow
	for {
		rows, err := s.terminals(ctx, idleStreams, "")
		if err != nil {
			return err
		}
		if idleReady(rows) {
			rows0 = rows
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for every terminal's first statistics and an empty outbox: %w", ErrTimeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := sleep(ctx, c.Duration); err != nil {
		return err
	}
	rows1, err := s.terminals(ctx, idleStreams, "")
	if err != nil {
		return err
	}
	window := time.Since(t0)
	r, err := idleFigures(rows0, rows1, window, orDefault(c.KeepAlive, defaultKeepAlive), statsEvery, c.ReportTerminals)
	if err != nil {
		return err
	}
	s.rep.Idle = r
	for _, row := range rows1 {
		if !row.Connected {
			s.rep.fail("idle: terminal %s disconnected in the window", row.ID)
			break
		}
	}
	s.log.Info("idle", "window", window.Round(time.Millisecond), "ip bytes per terminal", r.PerTerminal.IPBytes,
		"stats records", r.StatsRecords, "per month", iec(r.IPBytesPerMonth))
	return nil
}

// idleReady: everyone connected with its start-up records out (agent.started acknowledged,
// nothing queued), or with statistics already flowing (with statistics every few seconds an
// outbox is rarely empty on every terminal at once). The first statistics of a terminal come
// at a random point of its first interval, so a window that opens here sees the fleet's
// statistics spread evenly, as in the field, without waiting a whole interval.
func idleReady(rows []terminalRow) bool {
	for _, r := range rows {
		if !r.Connected || r.LastSeq[tmsproto.StreamEvent] == 0 || (r.Outbox > 0 && r.LastSeq[tmsproto.StreamStats] == 0) {
			return false
		}
	}
	return len(rows) > 0
}

// idleFigures computes the idle report from the terminal rows at the start and the end of the
// window.
func idleFigures(rows0, rows1 []terminalRow, window, keepAlive, statsEvery time.Duration, detail bool) (*idleReport, error) {
	if len(rows0) != len(rows1) {
		return nil, fmt.Errorf("idle: %d terminals at the start, %d at the end", len(rows0), len(rows1))
	}
	r := &idleReport{Terminals: len(rows1), WindowSec: window.Seconds(), KeepAliveSec: keepAlive.Seconds(),
		StatsIntervalSec: statsEvery.Seconds(), KeepAliveIntervals: window.Seconds() / keepAlive.Seconds()}
	ip := make([]float64, len(rows1))
	// The month is built from two measured parts, not by stretching the window: a fleet that
	// started together pings in phase, so a window holds one keepalive more or less for
	// every terminal at once. A terminal that sent nothing else in the window sent only
	// PINGREQs (2 bytes each): its IP bytes per ping are exact. The rest of the terminals'
	// bytes, less as many pings, are their statistics records'.
	var quietIP, quietPings, busyIP float64
	var quiet, busy int
	for i := range rows1 {
		a, b := rows0[i], rows1[i]
		if a.ID != b.ID {
			return nil, fmt.Errorf("idle: terminal %s at the start, %s at the end", a.ID, b.ID)
		}
		tr := trafficOf(b.Traffic).sub(trafficOf(a.Traffic))
		r.Traffic = r.Traffic.add(tr)
		stats := b.LastSeq[tmsproto.StreamStats] - a.LastSeq[tmsproto.StreamStats]
		r.StatsRecords += stats
		r.OtherRecords += b.LastSeq[tmsproto.StreamEvent] - a.LastSeq[tmsproto.StreamEvent] +
			b.LastSeq[tmsproto.StreamAck] - a.LastSeq[tmsproto.StreamAck]
		ip[i] = float64(tr.IPBytes)
		other := b.LastSeq[tmsproto.StreamEvent] - a.LastSeq[tmsproto.StreamEvent] +
			b.LastSeq[tmsproto.StreamAck] - a.LastSeq[tmsproto.StreamAck]
		switch {
		case other > 0 || tr.Conns > 0:
			// an event, an ack or a reconnect: neither part, left out of both
		case stats == 0 && tr.BytesUp > 0:
			quiet++
			quietIP += float64(tr.IPBytes)
			quietPings += float64(tr.BytesUp) / 2
		case stats > 0:
			busy++
			busyIP += float64(tr.IPBytes)
		}
		if detail {
			r.Rows = append(r.Rows, idleTerminalRow{ID: b.ID, Traffic: tr, StatsRecords: stats})
		}
	}
	r.PerTerminal = r.Traffic.per(len(rows1))
	r.IPBytesDist = distOf(ip)
	r.WindowIPBytesPerMonth = r.PerTerminal.IPBytes * float64(month) / float64(max(window, time.Millisecond))
	if quiet > 0 && quietPings > 0 && r.StatsRecords > 0 {
		r.IPBytesPerKeepAlive = quietIP / quietPings
		pingsEach := quietPings / float64(quiet)
		r.IPBytesPerStats = (busyIP - float64(busy)*pingsEach*r.IPBytesPerKeepAlive) / float64(r.StatsRecords)
		r.IPBytesPerMonth = float64(month)/float64(keepAlive)*r.IPBytesPerKeepAlive +
			float64(month)/float64(statsEvery)*r.IPBytesPerStats
	} else {
		r.IPBytesPerMonth = r.WindowIPBytesPerMonth
	}
	return r, nil
}

// storm: the broker stops, stays down -storm-down, and starts again; the timeline shows how
// the fleet comes back.
func (s *sim) storm(ctx context.Context) error {
	c := s.cfg
	if s.broker == nil {
		return ErrNoBroker
	}
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	if err := sleep(ctx, c.StormSettle); err != nil {
		return err
	}
	before, _, err := s.snapshot(ctx)
	if err != nil {
		return err
	}
	jitter := s.run.Jitter
	r := stormReport{Jitter: jitter, Terminals: c.N, BucketMs: int(stormBucketSize / time.Millisecond)}
	s.log.Info("storm: stopping the broker", "jitter", jitter, "down", c.StormDown)
	stopAt := time.Now()
	if err := s.broker.Stop(); err != nil {
		return fmt.Errorf("broker stop: %w", err)
	}
	downCtx, cancel := context.WithDeadline(ctx, stopAt.Add(c.StormDown))
	_, _, err = s.waitFor(downCtx, "every terminal disconnected", 0, func(f fleet.Snapshot) bool { return f.Connected == 0 })
	cancel()
	if err == nil {
		sec := time.Since(stopAt).Seconds()
		r.AllDisconnectedSec = &sec
	}
	if err := sleep(ctx, time.Until(stopAt.Add(c.StormDown))); err != nil {
		return err
	}
	if err := s.broker.Start(); err != nil {
		return fmt.Errorf("broker start: %w", err)
	}
	upAt := time.Now()
	r.DownSec = upAt.Sub(stopAt).Seconds()
	s.log.Info("storm: broker back", "down", upAt.Sub(stopAt).Round(time.Millisecond))
	after, _, err := s.waitFor(ctx, "every terminal reconnected", 0, func(f fleet.Snapshot) bool { return f.Connected == c.N })
	r.Reconnected = after.Connected
	r.AllReconnected = err == nil
	allAt := time.Now()
	if err == nil {
		// A second of the calm after, for the plot.
		if serr := sleep(ctx, time.Second+stormBucketSize); serr != nil {
			return serr
		}
	}
	r.Connects = after.Connects - before.Connects
	r.ConnectFailures = after.ConnectFailures - before.ConnectFailures
	resps, terr := s.callAll(ctx, s.same(request{Op: opTimeline, Bucket: stormBucketSize}))
	if terr != nil {
		return terr
	}
	parts := make([]shardTimeline, len(resps))
	for i, tr := range resps {
		parts[i] = shardTimeline{started: tr.Started, buckets: tr.Buckets}
	}
	r.Timeline = mergeTimelines(parts, upAt, stopAt.Add(-time.Second), allAt.Add(time.Second), stormBucketSize)
	stormFigures(&r, c.N)
	s.rep.Storms = append(s.rep.Storms, r)
	if !r.AllReconnected {
		s.rep.fail("storm (jitter %v): %d of %d terminals reconnected: %v", jitter, r.Reconnected, c.N, err)
	}
	s.log.Info("storm: reconnected", "jitter", jitter, "all", r.AllReconnected, "peak conn/s", r.PeakConnectsPerSec,
		"to 100%", fmtSec(r.To100Sec))
	return nil
}

func fmtSec(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *p)
}

// shardTimeline is one shard's connection timeline with the moment it counts from.
type shardTimeline struct {
	started time.Time
	buckets []fleet.Bucket
}

// mergeTimelines lays the shards' timelines onto one grid of bucket intervals aligned on
// origin, from from to to: connects and failures add up; connected is each shard's count at
// the end of the interval (carried over intervals it has no sample in), summed.
func mergeTimelines(parts []shardTimeline, origin, from, to time.Time, bucket time.Duration) []stormBucket {
	index := func(t time.Time) int { return int(math.Floor(float64(t.Sub(origin)) / float64(bucket))) }
	kFrom, kTo := index(from), index(to)
	if kTo < kFrom {
		return nil
	}
	out := make([]stormBucket, kTo-kFrom+1)
	for i := range out {
		out[i].TMs = int64(kFrom+i) * bucket.Milliseconds()
	}
	for _, p := range parts {
		connected := make([]int, len(out))
		for i := range connected {
			connected[i] = -1
		}
		carry := 0
		for _, b := range p.buckets {
			k := index(p.started.Add(b.At))
			switch {
			case k < kFrom:
				carry = b.Connected
				continue
			case k > kTo:
				continue
			}
			o := &out[k-kFrom]
			o.Connects += b.Connects
			o.Failures += b.Failures
			connected[k-kFrom] = b.Connected
		}
		cur := carry
		for i, n := range connected {
			if n >= 0 {
				cur = n
			}
			out[i].Connected += cur
		}
	}
	return out
}

// stormFigures derives the peaks and the times to 50, 95 and 100 % from the timeline.
func stormFigures(r *stormReport, n int) {
	perSec := float64(time.Second / stormBucketSize)
	window := int(perSec) // buckets per second
	for i, b := range r.Timeline {
		r.PeakConnectsPerSec = max(r.PeakConnectsPerSec, float64(b.Connects)*perSec)
		sum := 0
		for j := max(0, i-window+1); j <= i; j++ {
			sum += r.Timeline[j].Connects
		}
		r.PeakConnectsPer1Sec = max(r.PeakConnectsPer1Sec, float64(sum))
	}
	at := func(share float64) *float64 {
		need := int(math.Ceil(share * float64(n)))
		for _, b := range r.Timeline {
			if b.TMs >= 0 && b.Connected >= need {
				sec := float64(b.TMs+int64(r.BucketMs)) / 1000
				return &sec
			}
		}
		return nil
	}
	r.To50Sec, r.To95Sec, r.To100Sec = at(0.5), at(0.95), at(1)
}

// partition: a share of the fleet loses its network, queues events meanwhile, and is
// healed; then every record every terminal ever queued must have reached the TMS.
func (s *sim) partition(ctx context.Context) error {
	c := s.cfg
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	r := &partitionReport{Mode: c.PartitionMode.String(), Share: c.PartitionShare, ForSec: c.PartitionFor.Seconds(),
		EventsPerTerminal: c.PartitionEvents}
	s.rep.Partition = r
	resps, err := s.callAll(ctx, s.same(request{Op: opPartition, Share: c.PartitionShare, Mode: c.PartitionMode}))
	for _, p := range resps {
		r.Cut += p.Count
	}
	if err != nil {
		return err
	}
	cutAt := time.Now()
	s.log.Info("partition", "cut", r.Cut, "mode", r.Mode, "for", c.PartitionFor)
	if c.PartitionEvents > 0 {
		resps, err := s.callAll(ctx, s.same(request{Op: opEmit, Kind: "fleetsim.partition", Events: c.PartitionEvents}))
		for _, p := range resps {
			r.EventsQueued += p.Count
		}
		if err != nil {
			return err
		}
	}
	if err := sleep(ctx, time.Until(cutAt.Add(c.PartitionFor))); err != nil {
		return err
	}
	if _, err := s.callAll(ctx, s.same(request{Op: opHeal})); err != nil {
		return err
	}
	healAt := time.Now()
	if _, err := s.waitConnected(ctx); err != nil {
		return err
	}
	r.ReconnectedSec = time.Since(healAt).Seconds()
	if _, _, err := s.waitFor(ctx, "every outbox drained", 0, func(f fleet.Snapshot) bool {
		return f.OutboxRecords == 0 && f.Connected == c.N
	}); err != nil {
		return err
	}
	r.DrainedSec = time.Since(healAt).Seconds()

	// The observer may still be receiving what the broker has accepted: look until nothing
	// is missing or -timeout.
	wctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	for {
		rows, err := s.terminals(ctx, fleet.DefaultStreams, "")
		if err != nil {
			return err
		}
		l := checkLoss(s.obs.Seqs(), fleet.DefaultStreams, rows)
		r.Streams, r.Complete, r.Missing, r.Examples = l.Streams, l.Complete, l.Missing, l.Examples
		if l.Missing == 0 && l.Complete == l.Streams {
			break
		}
		if sleep(wctx, 200*time.Millisecond) != nil {
			break
		}
	}
	r.Received = s.obs.Received()
	r.OK = r.Missing == 0 && r.Complete == r.Streams && r.Cut > 0 && r.EventsQueued == r.Cut*c.PartitionEvents
	if !r.OK {
		s.rep.fail("partition: %d records missing in %d of %d streams (cut %d, events %d): %v",
			r.Missing, r.Streams-r.Complete, r.Streams, r.Cut, r.EventsQueued, r.Examples)
	}
	s.log.Info("partition healed", "reconnected", fmtSec(&r.ReconnectedSec), "drained", fmtSec(&r.DrainedSec),
		"missing", r.Missing, "streams", r.Streams)
	return nil
}

// checkLoss is fleet.Observer.Check over terminal rows, which also come from worker
// processes.
func checkLoss(seqs *tmsclient.SeqChecker, streams []string, rows []terminalRow) fleet.Loss {
	ids := make([]string, len(rows))
	last := make(map[string]map[string]uint64, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
		last[row.ID] = row.LastSeq
	}
	return fleet.CheckSeqs(seqs, streams, ids, func(id, stream string) (uint64, error) {
		return last[id][stream], nil
	})
}
