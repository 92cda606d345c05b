package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/tmsclient"
)

// Scenario names.
const (
	scSteady    = "steady"
	scStorm     = "storm"
	scPartition = "partition"
	scConfig    = "config"
	scOTA       = "ota"
	scIdle      = "idle"
	scAll       = "all"
)

// allScenarios is what -scenario all runs, in this order on one fleet. idle is left out: its
// window only means something at production keepalive and stats intervals, which are too long
// for the other scenarios.
var allScenarios = []string{scSteady, scStorm, scPartition, scConfig, scOTA}

// knownScenarios is the order scenarios run in when several are named.
var knownScenarios = []string{scSteady, scIdle, scStorm, scPartition, scConfig, scOTA}

// terminalsPerProc is how many terminals one process runs at most by default: a terminal holds
// two file descriptors (its bbolt file and its socket) and a process may open 20 000.
const terminalsPerProc = 9000

// The agent's defaults, for the report (the fleet applies them itself for zero options).
const (
	defaultKeepAlive     = 300 * time.Second
	defaultPingTimeout   = 20 * time.Second
	defaultStatsInterval = time.Hour
	defaultBackoffBase   = 2 * time.Second
	defaultBackoffCap    = 5 * time.Minute
)

// Environment variables for the secrets, so that they stay off the command line.
const (
	envDeviceSecret = "FLEETSIM_DEVICE_SECRET"
	envTMSPassword  = "FLEETSIM_TMS_PASSWORD"
)

// ErrUsage marks a bad command line.
var ErrUsage = errors.New("usage")

// config is everything a run is told.
type config struct {
	N      int
	Prefix string

	Broker       string // external broker URL; "" with Mosquitto
	Mosquitto    bool   // start a local Mosquitto with accounts for the fleet
	MosquittoBin string
	TMSUser      string
	TMSPassword  string
	DeviceSecret string // device passwords are derived from it (devicePassword)
	WritePasswd  string // write a Mosquitto password file for the fleet and exit
	TLS          tmsclient.TLSFiles

	Dir   string
	Keep  bool
	Procs int

	StartRate     float64
	KeepAlive     time.Duration
	PingTimeout   time.Duration
	StatsInterval time.Duration
	BackoffBase   time.Duration
	BackoffCap    time.Duration
	Jitter        bool
	LocalAddrs    []string

	Scenarios []string
	Duration  time.Duration
	Timeout   time.Duration

	StormDown    time.Duration
	StormSettle  time.Duration
	StormCompare bool

	PartitionShare  float64
	PartitionFor    time.Duration
	PartitionMode   wire.Mode
	PartitionEvents int

	ConfigRate float64
	OTASize    int
	OTARate    float64

	Report          string
	ReportTerminals bool
	Every           time.Duration
	Verbose         bool

	// Worker is "i/K" in a worker process.
	Worker string

	// password overrides the derived device passwords (tests with their own broker accounts).
	password func(id string) string
}

const usageHead = `Usage: fleetsim [flags]

Runs N simulated payment terminals, each with the agent's real TMS link, outbox, command
journal, configuration and update code and its own storage directory, against an MQTT broker
(-broker URL) or a local Mosquitto it starts with an account per terminal (-mosquitto), and
measures scenarios: steady state, a broker restart (reconnect storm), a partition of part of
the fleet, a fleet-wide config push and an OTA rollout, and an idle window for the mobile data
figure. Terminal i is PREFIX + zero-padded i; its MQTT password is derived from the device
secret (env ` + envDeviceSecret + `), see -write-passwd for an external broker.
Above 9000 terminals the fleet is split over worker processes (-procs), as one process may
hold 20 000 file descriptors and a terminal holds two.

Flags:
`

// parseFlags parses the command line. The returned error wraps ErrUsage for bad flags, and is
// flag.ErrHelp for -h.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("fleetsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.VisitAll(func(f *flag.Flag) {
			if hiddenFlags[f.Name] {
				return
			}
			name, usage := flag.UnquoteUsage(f)
			if name != "" {
				name = " " + name
			}
			fmt.Fprintf(fs.Output(), "  -%s%s\n    \t%s", f.Name, name, strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
				fmt.Fprintf(fs.Output(), " (default %s)", f.DefValue)
			}
			fmt.Fprintln(fs.Output())
		})
	}
	fs.IntVar(&c.N, "n", 100, "number of terminals")
	fs.StringVar(&c.Prefix, "prefix", "FS-", "device id `prefix`; ids are the prefix and a zero-padded index")
	fs.StringVar(&c.Broker, "broker", "", "broker `URL` (tcp:// or ssl://); the TMS account and the device accounts must exist")
	fs.BoolVar(&c.Mosquitto, "mosquitto", false, "start a local Mosquitto on loopback with accounts for the fleet (needed by -scenario storm)")
	fs.StringVar(&c.MosquittoBin, "mosquitto-bin", "", "Mosquitto `binary` (default: mosquitto in PATH, then /usr/sbin/mosquitto)")
	fs.StringVar(&c.TMSUser, "tms-user", "tms", "TMS `username` on the broker (sees tms/v1/#)")
	fs.StringVar(&c.TMSPassword, "tms-password", "", "TMS `password` (default: env "+envTMSPassword+"; random with -mosquitto)")
	fs.StringVar(&c.DeviceSecret, "device-secret", "", "`secret` the device passwords are derived from (default: env "+envDeviceSecret+"; random with -mosquitto)")
	fs.StringVar(&c.WritePasswd, "write-passwd", "", "write a Mosquitto password `file` with the TMS account and every terminal's, then exit")
	fs.StringVar(&c.TLS.CAFile, "tls-ca", "", "PEM CA `file` to verify the broker with (ssl:// brokers)")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "PEM client certificate `file` (mutual TLS)")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "PEM client key `file` (mutual TLS)")
	fs.StringVar(&c.TLS.ServerName, "tls-server-name", "", "`name` to verify the broker's certificate against")
	fs.StringVar(&c.Dir, "dir", "", "root `directory` of the terminals' data (default: a new directory under /dev/shm, else the temp dir; removed at the end)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the data directory")
	fs.IntVar(&c.Procs, "procs", 0, "worker `processes` (default: ceil(n/9000); 1 runs the fleet in this process)")
	fs.Float64Var(&c.StartRate, "start-rate", 0, "start `rate` in terminals per second (0: as fast as possible)")
	fs.DurationVar(&c.KeepAlive, "keepalive", 0, "MQTT keepalive (0: the agent's 300s)")
	fs.DurationVar(&c.PingTimeout, "ping-timeout", 0, "MQTT ping timeout (0: the agent's 20s)")
	fs.DurationVar(&c.StatsInterval, "stats-interval", 0, "stats record interval (0: the terminal configuration's, 1h)")
	fs.DurationVar(&c.BackoffBase, "backoff-base", 0, "reconnect backoff base (0: the agent's 2s)")
	fs.DurationVar(&c.BackoffCap, "backoff-cap", 0, "reconnect backoff cap (0: the agent's 5m)")
	fs.BoolVar(&c.Jitter, "jitter", true, "full jitter in the reconnect backoff; false: every delay is the ceiling (lock-step)")
	localAddrs := fs.String("local-addrs", "", "comma-separated source `IPs` used round-robin (e.g. 127.0.0.2,127.0.0.3) to widen the loopback port space")
	scenario := fs.String("scenario", scSteady, "`list` of scenarios, comma-separated: steady, storm, partition, config, ota, idle, or all (= steady,storm,partition,config,ota)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "steady-state run time, and the idle window")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Minute, "bound on every wait (all connected, reconnected, drained, rollout finished)")
	fs.DurationVar(&c.StormDown, "storm-down", 10*time.Second, "broker down time in the storm")
	fs.DurationVar(&c.StormSettle, "storm-settle", 65*time.Second, "connected time before the storm: a session up over a minute restarts the backoff at its first step, as in the field")
	fs.BoolVar(&c.StormCompare, "storm-compare", false, "run the storm twice: with full jitter and lock-step (a second fleet)")
	fs.Float64Var(&c.PartitionShare, "partition-share", 0.2, "`share` of the fleet cut off in the partition")
	fs.DurationVar(&c.PartitionFor, "partition-for", 60*time.Second, "partition length")
	mode := fs.String("partition-mode", "blackhole", "partition `mode`: blackhole (a dead radio path: only the keepalive notices) or reset (the modem reports the loss)")
	fs.IntVar(&c.PartitionEvents, "partition-events", 10, "events each cut terminal queues while cut")
	fs.Float64Var(&c.ConfigRate, "config-rate", 0, "config push `rate` in terminals per minute (0: all at once)")
	fs.IntVar(&c.OTASize, "ota-size", 64<<10, "size of the OTA release's file in `bytes`")
	fs.Float64Var(&c.OTARate, "ota-rate", 0, "OTA rollout `rate` in terminals per minute (0: all at once)")
	fs.StringVar(&c.Report, "report", "", "write the report JSON to `file` (- for stdout)")
	fs.BoolVar(&c.ReportTerminals, "report-terminals", false, "include one row per terminal in the report")
	fs.DurationVar(&c.Every, "every", 5*time.Second, "live progress line interval on stderr (0: none)")
	fs.BoolVar(&c.Verbose, "v", false, "log at debug level")
	fs.StringVar(&c.Worker, "worker", "", "internal: run as worker process `i/K`, commanded over stdin")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	if c.Worker != "" {
		// A worker is told everything else over stdin.
		return c, nil
	}
	if c.TMSPassword == "" {
		c.TMSPassword = getenv(envTMSPassword)
	}
	if c.DeviceSecret == "" {
		c.DeviceSecret = getenv(envDeviceSecret)
	}
	if *localAddrs != "" {
		c.LocalAddrs = strings.Split(*localAddrs, ",")
	}
	m, err := wire.ParseMode(*mode)
	if err == nil && m == wire.Up {
		err = errors.New("up is no partition")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: -partition-mode: %v", ErrUsage, err)
	}
	c.PartitionMode = m
	if c.Scenarios, err = parseScenarios(*scenario); err != nil {
		return nil, fmt.Errorf("%w: -scenario: %v", ErrUsage, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if c.Procs == 0 {
		c.Procs = defaultProcs(c.N)
	}
	return c, nil
}

// hiddenFlags are left out of the usage text.
var hiddenFlags = map[string]bool{"worker": true}

func (c *config) check() error {
	switch {
	case c.N < 1:
		return errors.New("-n must be at least 1")
	case c.Procs < 0 || c.Procs > c.N:
		return fmt.Errorf("-procs must be between 1 and -n (%d)", c.N)
	case c.Broker == "" && !c.Mosquitto && c.WritePasswd == "" && c.password == nil:
		return errors.New("one of -broker URL or -mosquitto is required")
	case c.Broker != "" && c.Mosquitto:
		return errors.New("-broker and -mosquitto exclude each other")
	case c.Mosquitto && !c.TLS.Empty():
		return errors.New("the local Mosquitto listens in plain text: the -tls flags are for -broker ssl://")
	case c.PartitionShare <= 0 || c.PartitionShare > 1:
		return errors.New("-partition-share must be in (0, 1]")
	case c.PartitionEvents < 0:
		return errors.New("-partition-events must not be negative")
	case c.OTASize < 1 || c.OTASize > 256<<20:
		return errors.New("-ota-size must be in 1..256 MiB")
	case c.ConfigRate < 0 || c.OTARate < 0 || c.StartRate < 0:
		return errors.New("rates must not be negative")
	case c.Duration < 0 || c.Timeout <= 0 || c.StormDown < 0 || c.StormSettle < 0 || c.PartitionFor < 0:
		return errors.New("durations must not be negative (and -timeout positive)")
	}
	// The widest id must stay a valid device id.
	if err := tmsproto.ValidDeviceID(fleet.DeviceIDs(c.Prefix, c.N-1, 1, idWidth(c.N))[0]); err != nil {
		return fmt.Errorf("-prefix %q: %w", c.Prefix, err)
	}
	if c.has(scStorm) && !c.Mosquitto && c.Broker != "" {
		return errors.New("-scenario storm restarts the broker: it needs -mosquitto")
	}
	if c.Broker != "" && c.WritePasswd == "" && (c.DeviceSecret == "" || c.TMSPassword == "") && c.password == nil {
		return fmt.Errorf("an external broker needs the device secret (-device-secret or %s) and the TMS password (-tms-password or %s)", envDeviceSecret, envTMSPassword)
	}
	if c.WritePasswd != "" && (c.DeviceSecret == "" || c.TMSPassword == "") {
		return fmt.Errorf("-write-passwd needs the device secret (-device-secret or %s) and the TMS password (-tms-password or %s)", envDeviceSecret, envTMSPassword)
	}
	return nil
}

// has reports whether scenario s is to run.
func (c *config) has(s string) bool { return slices.Contains(c.Scenarios, s) }

func parseScenarios(s string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == scAll:
			for _, a := range allScenarios {
				want[a] = true
			}
		case slices.Contains(knownScenarios, name):
			want[name] = true
		default:
			return nil, fmt.Errorf("unknown scenario %q", name)
		}
	}
	var out []string
	for _, k := range knownScenarios {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

// defaultProcs is ceil(n / terminalsPerProc).
func defaultProcs(n int) int {
	return max(1, int(math.Ceil(float64(n)/terminalsPerProc)))
}

// idWidth is the digits of every terminal's index in a fleet of n: fixed for the whole fleet,
// so that worker processes running slices of it agree on the ids.
func idWidth(n int) int { return max(5, len(strconv.Itoa(max(n-1, 0)))) }

// deviceIDs are the ids of the whole fleet, in index order.
func (c *config) deviceIDs() []string { return fleet.DeviceIDs(c.Prefix, 0, c.N, idWidth(c.N)) }

// defaultDir is a new directory under /dev/shm when it exists (bbolt's fsyncs cost nothing
// there, so the simulator measures the agent's CPU, not the disk), else under the temp dir.
func defaultDir() (string, error) {
	root := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		root = "/dev/shm"
	}
	return os.MkdirTemp(root, "fleetsim-")
}
