package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
)

// reportSchema is the version of the report's JSON form; raise it on incompatible changes.
const reportSchema = 1

// Report is the JSON report: every figure of a run. Durations are seconds (float) unless the
// name says otherwise; "up" is terminal → broker, "down" broker → terminal.
type Report struct {
	Schema   int          `json:"schema"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Host     hostInfo     `json:"host"`
	Config   reportConfig `json:"config"`

	Steady     *steadyReport    `json:"steady,omitempty"`
	Idle       *idleReport      `json:"idle,omitempty"`
	Storms     []stormReport    `json:"storms,omitempty"`
	Partition  *partitionReport `json:"partition,omitempty"`
	ConfigPush *configReport    `json:"configPush,omitempty"`
	OTA        *otaReport       `json:"ota,omitempty"`

	// Fleets has one entry per fleet run (two with -storm-compare).
	Fleets []*fleetRunReport `json:"fleets"`
	// Broker is the local Mosquitto's cost at the end (nil with an external broker).
	Broker *procUsage `json:"broker,omitempty"`
	// Failures lists the invariants a scenario did not meet; the exit status is 1 then.
	Failures []string `json:"failures,omitempty"`
	// Error is why the run stopped early.
	Error string `json:"error,omitempty"`
}

type hostInfo struct {
	CPUs      int    `json:"cpus"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"goVersion"`
}

type reportConfig struct {
	N                int      `json:"n"`
	Procs            int      `json:"procs"`
	Prefix           string   `json:"prefix"`
	Broker           string   `json:"broker"`
	LocalBroker      bool     `json:"localBroker"`
	TLS              bool     `json:"tls"`
	Scenarios        []string `json:"scenarios"`
	KeepAliveSec     float64  `json:"keepAliveSec"`
	PingTimeoutSec   float64  `json:"pingTimeoutSec"`
	StatsIntervalSec float64  `json:"statsIntervalSec"`
	BackoffBaseSec   float64  `json:"backoffBaseSec"`
	BackoffCapSec    float64  `json:"backoffCapSec"`
	Jitter           bool     `json:"jitter"`
	StartRate        float64  `json:"startRate"`
	DurationSec      float64  `json:"durationSec"`
	TimeoutSec       float64  `json:"timeoutSec"`
	StormDownSec     float64  `json:"stormDownSec"`
	StormSettleSec   float64  `json:"stormSettleSec"`
	StormCompare     bool     `json:"stormCompare"`
	PartitionShare   float64  `json:"partitionShare"`
	PartitionForSec  float64  `json:"partitionForSec"`
	PartitionMode    string   `json:"partitionMode"`
	PartitionEvents  int      `json:"partitionEvents"`
	ConfigRate       float64  `json:"configRatePerMin"`
	OTASize          int      `json:"otaSizeBytes"`
	OTARate          float64  `json:"otaRatePerMin"`
	LocalAddrs       []string `json:"localAddrs,omitempty"`
}

// trafficFig is what crossed the terminals' connections.
type trafficFig struct {
	BytesUp   int64 `json:"bytesUp"`   // TCP payload (MQTT, and TLS records with TLS)
	BytesDown int64 `json:"bytesDown"` // TCP payload
	SegsUp    int64 `json:"segsUp"`    // TCP segments, pure ACKs included (TCP_INFO)
	SegsDown  int64 `json:"segsDown"`
	IPBytes   int64 `json:"ipBytes"` // payload + 52 header bytes per segment, both ways: what a mobile network bills
	Conns     int64 `json:"conns"`   // connections opened
}

func trafficOf(t wire.Traffic) trafficFig {
	return trafficFig{BytesUp: t.BytesOut, BytesDown: t.BytesIn, SegsUp: t.SegsOut, SegsDown: t.SegsIn,
		IPBytes: t.IPBytes(), Conns: t.Conns}
}

// sub is t - u, for windows.
func (t trafficFig) sub(u trafficFig) trafficFig {
	return trafficFig{BytesUp: t.BytesUp - u.BytesUp, BytesDown: t.BytesDown - u.BytesDown,
		SegsUp: t.SegsUp - u.SegsUp, SegsDown: t.SegsDown - u.SegsDown, IPBytes: t.IPBytes - u.IPBytes,
		Conns: t.Conns - u.Conns}
}

// add is t + u.
func (t trafficFig) add(u trafficFig) trafficFig {
	return trafficFig{BytesUp: t.BytesUp + u.BytesUp, BytesDown: t.BytesDown + u.BytesDown,
		SegsUp: t.SegsUp + u.SegsUp, SegsDown: t.SegsDown + u.SegsDown, IPBytes: t.IPBytes + u.IPBytes,
		Conns: t.Conns + u.Conns}
}

// perTerminal is a trafficFig divided by the number of terminals.
type perTerminal struct {
	BytesUp   float64 `json:"bytesUp"`
	BytesDown float64 `json:"bytesDown"`
	SegsUp    float64 `json:"segsUp"`
	SegsDown  float64 `json:"segsDown"`
	IPBytes   float64 `json:"ipBytes"`
}

func (t trafficFig) per(n int) perTerminal {
	d := float64(max(n, 1))
	return perTerminal{BytesUp: float64(t.BytesUp) / d, BytesDown: float64(t.BytesDown) / d,
		SegsUp: float64(t.SegsUp) / d, SegsDown: float64(t.SegsDown) / d, IPBytes: float64(t.IPBytes) / d}
}

// dist summarises one figure over the terminals.
type dist struct {
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func distOf(v []float64) dist {
	if len(v) == 0 {
		return dist{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return dist{Min: s[0], P50: at(0.5), P95: at(0.95), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

// totals are the fleet's counters at one moment, summed over its processes.
type totals struct {
	Terminals       int            `json:"terminals"`
	Connected       int            `json:"connected"`
	Connects        uint64         `json:"connects"`
	ConnectFailures uint64         `json:"connectFailures"`
	Published       uint64         `json:"published"` // records handed to MQTT
	Acked           uint64         `json:"acked"`     // records PUBACKed
	Commands        uint64         `json:"commands"`  // commands received
	OutboxRecords   int            `json:"outboxRecords"`
	Traffic         trafficFig     `json:"traffic"`
	Errors          map[string]int `json:"errors,omitempty"` // last error of links that are down, by text
}

func totalsOf(s fleet.Snapshot) totals {
	return totals{Terminals: s.Terminals, Connected: s.Connected, Connects: s.Connects,
		ConnectFailures: s.ConnectFailures, Published: s.Published, Acked: s.Acked, Commands: s.Commands,
		OutboxRecords: s.OutboxRecords, Traffic: trafficOf(s.Traffic), Errors: s.Errors}
}

type fleetRunReport struct {
	Jitter          bool        `json:"jitter"`
	Terminals       int         `json:"terminals"`
	Procs           int         `json:"procs"`
	StartSec        float64     `json:"startSec"`        // until every terminal was started
	AllConnectedSec float64     `json:"allConnectedSec"` // from the start until all were connected at once (0: never)
	Final           totals      `json:"final"`           // at the end of the run, before closing
	Processes       []procUsage `json:"processes"`       // this process and the workers, at close
}

type steadyReport struct {
	Terminals       int            `json:"terminals"`
	WindowSec       float64        `json:"windowSec"`
	Connected       int            `json:"connected"` // at the end of the window
	MsgsUpPerSec    float64        `json:"msgsUpPerSec"`
	AckedPerSec     float64        `json:"ackedPerSec"`
	MsgsDownPerSec  float64        `json:"msgsDownPerSec"`
	Connects        uint64         `json:"connects"` // in the window
	ConnectFailures uint64         `json:"connectFailures"`
	Traffic         trafficFig     `json:"traffic"`          // in the window, whole fleet
	PerTerminal     perTerminal    `json:"perTerminal"`      // in the window
	SinceStart      perTerminal    `json:"perTerminalTotal"` // since the fleet started, connecting included
	Errors          map[string]int `json:"errors,omitempty"`
	Processes       []procUsage    `json:"processes"` // at the end of the window
	CPUSec          float64        `json:"cpuSec"`    // of the fleet's processes, in the window
	CPUCores        float64        `json:"cpuCores"`  // cpuSec / windowSec
	Broker          *procUsage     `json:"broker,omitempty"`
	BrokerCPUSec    float64        `json:"brokerCpuSec,omitempty"` // in the window
}

type stormReport struct {
	Jitter              bool     `json:"jitter"`
	Terminals           int      `json:"terminals"`
	DownSec             float64  `json:"downSec"` // broker stop began → start returned
	AllDisconnectedSec  *float64 `json:"allDisconnectedSec"`
	Reconnected         int      `json:"reconnected"`
	AllReconnected      bool     `json:"allReconnected"`
	To50Sec             *float64 `json:"to50Sec"` // from the broker back up; 100 ms resolution
	To95Sec             *float64 `json:"to95Sec"`
	To100Sec            *float64 `json:"to100Sec"`
	PeakConnectsPerSec  float64  `json:"peakConnectsPerSec"`   // best 100 ms bucket × 10
	PeakConnectsPer1Sec float64  `json:"peakConnectsPerSec1s"` // best 1 s window
	Connects            uint64   `json:"connects"`             // during the storm
	ConnectFailures     uint64   `json:"connectFailures"`
	BucketMs            int      `json:"bucketMs"`
	// Timeline runs from a second before the stop to a second after all reconnected; tMs is
	// the bucket's start relative to the broker being back up (negative while down).
	Timeline []stormBucket `json:"timeline"`
}

type stormBucket struct {
	TMs       int64 `json:"tMs"`
	Connects  int   `json:"connects"`
	Failures  int   `json:"failures"`
	Connected int   `json:"connected"`
}

type partitionReport struct {
	Mode              string   `json:"mode"`
	Share             float64  `json:"share"`
	Cut               int      `json:"cut"`
	ForSec            float64  `json:"forSec"`
	EventsPerTerminal int      `json:"eventsPerTerminal"`
	EventsQueued      int      `json:"eventsQueued"`
	ReconnectedSec    float64  `json:"reconnectedSec"` // after the heal, until all connected
	DrainedSec        float64  `json:"drainedSec"`     // after the heal, until every outbox was empty
	Streams           int      `json:"streams"`        // (terminal, stream) pairs checked
	Complete          int      `json:"complete"`
	Missing           uint64   `json:"missing"`
	Examples          []string `json:"examples,omitempty"`
	Received          uint64   `json:"received"` // records the observer received, duplicates included
	OK                bool     `json:"ok"`
}

type rolloutFig struct {
	Targets     int            `json:"targets"`
	RatePerMin  float64        `json:"ratePerMin"` // 0: all at once
	AllFinalSec float64        `json:"allFinalSec"`
	States      map[string]int `json:"states"` // per-terminal rollout states
	Succeeded   int            `json:"succeeded"`
	Failed      int            `json:"failed"`
	TimedOut    int            `json:"timedOut"`
	Halted      bool           `json:"halted"`
	HaltReason  string         `json:"haltReason,omitempty"`
}

type configReport struct {
	Version uint64 `json:"version"`
	rolloutFig
	AtVersion int  `json:"atVersion"` // terminals whose active configuration is Version
	OK        bool `json:"ok"`
}

type otaReport struct {
	Release   string `json:"release"`
	FileBytes int    `json:"fileBytes"`
	rolloutFig
	Installed       int   `json:"installed"` // terminals with the release's file installed
	BlobBytesServed int64 `json:"blobBytesServed"`
	OK              bool  `json:"ok"`
}

type idleReport struct {
	Terminals        int     `json:"terminals"`
	WindowSec        float64 `json:"windowSec"`
	KeepAliveSec     float64 `json:"keepAliveSec"`
	StatsIntervalSec float64 `json:"statsIntervalSec"`
	// KeepAliveIntervals is windowSec / keepAliveSec: the keepalive intervals of one terminal
	// in the window, each one PINGREQ/PINGRESP when nothing else was sent.
	KeepAliveIntervals float64 `json:"keepAliveIntervals"`
	StatsRecords       uint64  `json:"statsRecords"` // queued in the window, whole fleet
	OtherRecords       uint64  `json:"otherRecords"` // events and acks queued in the window
	// Traffic and PerTerminal cover exactly the window.
	Traffic     trafficFig  `json:"traffic"`
	PerTerminal perTerminal `json:"perTerminal"`
	IPBytesDist dist        `json:"ipBytesDist"` // per terminal
	// IPBytesPerKeepAlive is one keepalive exchange on the air (PINGREQ, PINGRESP and their
	// segments), measured on the terminals that sent nothing else in the window;
	// IPBytesPerStats one statistics record with its PUBACK and segments.
	IPBytesPerKeepAlive float64 `json:"ipBytesPerKeepAlive,omitempty"`
	IPBytesPerStats     float64 `json:"ipBytesPerStats,omitempty"`
	// IPBytesPerMonth is 30 days of keepalives and statistics at the configured intervals,
	// from the two measured parts above (the window's mean when the window lacks either).
	IPBytesPerMonth float64 `json:"ipBytesPerMonth"`
	// WindowIPBytesPerMonth is perTerminal.ipBytes × 30 days / window: off by a keepalive
	// per window when the fleet's pings are in phase (a fleet started together).
	WindowIPBytesPerMonth float64           `json:"windowIpBytesPerMonth"`
	Rows                  []idleTerminalRow `json:"rows,omitempty"` // with -report-terminals
}

type idleTerminalRow struct {
	ID           string     `json:"id"`
	Traffic      trafficFig `json:"traffic"`
	StatsRecords uint64     `json:"statsRecords"`
}

// newReport fills what is known before the run.
func newReport(c *config, brokerURL string) *Report {
	return &Report{
		Schema:  reportSchema,
		Started: time.Now(),
		Host:    hostInfo{CPUs: numCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()},
		Config: reportConfig{
			N: c.N, Procs: c.Procs, Prefix: c.Prefix, Broker: brokerURL, LocalBroker: c.Mosquitto,
			TLS: !c.TLS.Empty(), Scenarios: c.Scenarios,
			KeepAliveSec:     secs(orDefault(c.KeepAlive, defaultKeepAlive)),
			PingTimeoutSec:   secs(orDefault(c.PingTimeout, defaultPingTimeout)),
			StatsIntervalSec: secs(orDefault(c.StatsInterval, defaultStatsInterval)),
			BackoffBaseSec:   secs(orDefault(c.BackoffBase, defaultBackoffBase)),
			BackoffCapSec:    secs(orDefault(c.BackoffCap, defaultBackoffCap)),
			Jitter:           c.Jitter, StartRate: c.StartRate,
			DurationSec: secs(c.Duration), TimeoutSec: secs(c.Timeout),
			StormDownSec: secs(c.StormDown), StormSettleSec: secs(c.StormSettle), StormCompare: c.StormCompare,
			PartitionShare: c.PartitionShare, PartitionForSec: secs(c.PartitionFor),
			PartitionMode: c.PartitionMode.String(), PartitionEvents: c.PartitionEvents,
			ConfigRate: c.ConfigRate, OTASize: c.OTASize, OTARate: c.OTARate, LocalAddrs: c.LocalAddrs,
		},
	}
}

func (r *Report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// write writes the report to path ("-" = w), atomically for a file.
func (r *Report) write(path string, w io.Writer) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	data = append(data, '\n')
	if path == "-" {
		_, err := w.Write(data)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fleetsim-report-*")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func secs(d time.Duration) float64 { return d.Seconds() }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// mergeSnapshots sums the shards' snapshots into the fleet's.
func mergeSnapshots(parts []fleet.Snapshot) fleet.Snapshot {
	var m fleet.Snapshot
	for _, s := range parts {
		if s.At.After(m.At) {
			m.At = s.At
		}
		m.Terminals += s.Terminals
		m.Connected += s.Connected
		m.Connects += s.Connects
		m.ConnectFailures += s.ConnectFailures
		m.Published += s.Published
		m.Acked += s.Acked
		m.Commands += s.Commands
		m.Traffic = m.Traffic.Add(s.Traffic)
		m.OutboxRecords += s.OutboxRecords
		m.HeapBytes += s.HeapBytes
		m.Goroutines += s.Goroutines
		if len(s.Errors) > 0 {
			if m.Errors == nil {
				m.Errors = map[string]int{}
			}
			for k, v := range s.Errors {
				m.Errors[k] += v
			}
		}
	}
	return m
}

// sortedKeys is for stable output of maps in the live line.
func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }
