package config

import (
	"flag"
	"fmt"
	"strings"
)

// Flags are the command-line settings that override the file. Only flags actually given on
// the command line override anything: an unset --board must not reset board to its default.
type Flags struct {
	fs       *flag.FlagSet
	path     string
	deviceID string
	dataDir  string
	board    string
	broker   string
	logLevel string
}

// AddFlags defines --config, --device-id, --data-dir, --board, --broker and --log-level on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.path, "config", "", "configuration file (default "+DefaultPath+" if it exists)")
	fs.StringVar(&f.deviceID, "device-id", "", "device id (overrides device_id)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (overrides data_dir)")
	fs.StringVar(&f.board, "board", "", "board: sim, generic or a model (overrides board)")
	fs.StringVar(&f.broker, "broker", "", "TMS broker URL (overrides tms.broker)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	return f
}

// Load reads the configuration file, applies the flags that were set, and validates the result.
// Call it after the FlagSet has parsed the arguments.
func (f *Flags) Load() (*Config, error) {
	if !f.fs.Parsed() {
		return nil, fmt.Errorf("config: flags not parsed")
	}
	c, err := read(f.path)
	if err != nil {
		return nil, err
	}
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "device-id":
			c.DeviceID = f.deviceID
		case "data-dir":
			c.DataDir = f.dataDir
		case "board":
			c.Board = f.board
		case "broker":
			c.TMS.Broker = f.broker
		case "log-level":
			c.Log.Level = f.logLevel
		}
	})
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// FromArgs defines the configuration flags on fs (a new "run" FlagSet when nil), parses args
// and loads the configuration. The caller may have defined flags of its own on fs; positional
// arguments are refused. flag.ErrHelp is returned as is for -h.
func FromArgs(args []string, fs *flag.FlagSet) (*Config, error) {
	if fs == nil {
		fs = flag.NewFlagSet("run", flag.ContinueOnError)
	}
	f := AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return f.Load()
}
