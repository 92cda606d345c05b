package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/tmsclient"
)

// The parent commands each shard of the fleet with requests and gets one response per
// request. A shard in this process answers by a method call; a worker process reads the
// requests as JSON lines on its stdin and writes the responses as JSON lines on its stdout,
// so both paths run the same code (shardState.handle).

// Shard operations.
const (
	opStart     = "start"     // start the shard's fleet from Spec
	opSnapshot  = "snapshot"  // fleet.Snapshot and the process's usage
	opTimeline  = "timeline"  // the connection timeline in Bucket intervals
	opPartition = "partition" // cut Share of the terminals (by global index) in Mode
	opHeal      = "heal"      // heal the cut terminals
	opEmit      = "emit"      // queue Events events on every cut terminal
	opTerminals = "terminals" // one row per terminal
	opClose     = "close"     // close the fleet (the process stays for another start)
)

// request is one command to a shard.
type request struct {
	ID uint64 `json:"id"`
	Op string `json:"op"`

	Spec *fleetSpec `json:"spec,omitempty"` // start

	// Full asks for the traffic with the live connections' TCP segments read from the kernel
	// (fleet.Fleet.Traffic), for measurements; without it the snapshot is the cheap one.
	Full bool `json:"full,omitempty"` // snapshot

	Bucket time.Duration `json:"bucket,omitempty"` // timeline

	Share float64   `json:"share,omitempty"` // partition
	Mode  wire.Mode `json:"mode,omitempty"`  // partition

	Events int    `json:"events,omitempty"` // emit
	Kind   string `json:"kind,omitempty"`   // emit

	Streams   []string `json:"streams,omitempty"`   // terminals: last seqs of these streams
	Component string   `json:"component,omitempty"` // terminals: installed version of this component
}

// response answers the request with the same ID.
type response struct {
	ID  uint64 `json:"id"`
	Err string `json:"err,omitempty"`

	Snapshot *fleet.Snapshot `json:"snapshot,omitempty"`
	Usage    *procUsage      `json:"usage,omitempty"`

	Started time.Time      `json:"started,omitzero"` // start, timeline: when the fleet's clock began
	Buckets []fleet.Bucket `json:"buckets,omitempty"`

	Count int `json:"count,omitempty"` // partition: terminals cut; emit: events queued; heal: healed

	Terminals []terminalRow `json:"terminals,omitempty"`
}

// fleetSpec is what a shard needs to start its part of the fleet. It travels over the
// worker's stdin, never on a command line: it holds the device secret.
type fleetSpec struct {
	First, N, Width int
	Prefix, Dir     string
	Broker          string
	TLS             tmsclient.TLSFiles
	DeviceSecret    string
	CommandKeys     map[string]ed25519.PublicKey
	ReleaseKeys     map[string]ed25519.PublicKey

	KeepAlive, PingTimeout, StatsInterval time.Duration
	BackoffBase, BackoffCap               time.Duration
	NoJitter                              bool
	StartRate                             float64
	LocalAddrs                            []string
}

// terminalRow is one terminal's state as the parent needs it for checks and the report.
type terminalRow struct {
	ID            string            `json:"id"`
	Connected     bool              `json:"connected"`
	Connects      uint64            `json:"connects"`
	Failures      uint64            `json:"failures"`
	LastError     string            `json:"lastError,omitempty"`
	Traffic       wire.Traffic      `json:"traffic"`
	Outbox        int               `json:"outbox"`
	ConfigVersion uint64            `json:"configVersion"`
	OTAStage      string            `json:"otaStage,omitempty"`
	OTAVersion    string            `json:"otaVersion,omitempty"` // installed version of request.Component
	LastSeq       map[string]uint64 `json:"lastSeq,omitempty"`
}

// devicePassword derives a terminal's MQTT password from the fleet's device secret, so that
// worker processes and an external broker's password file agree without a list.
func devicePassword(secret, id string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("fleetsim device password\x00"))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
