// Package config is the agent's local configuration file (TOML).
//
// The file holds what the agent needs before it can reach the TMS: identity, data directory,
// board, broker and trust anchors, local limits and logging. Everything the TMS manages later
// (terminal parameters, keys, software) lives elsewhere. Every key has a default, so an empty
// file is valid on the sim board; unknown keys are errors, because a misspelt key silently
// ignored on a terminal in the field is a setting nobody can see is missing.
package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/posagent/posagent/board"

	"github.com/BurntSushi/toml"

	"github.com/posagent/posagent/agent/backoff"
)

// DefaultPath is read when no --config is given; its absence is not an error.
var DefaultPath = "/etc/posagent/posagent.toml"

// MaxFileSize bounds the file read: a configuration is a few KiB, and the parser should never
// be handed a runaway file.
const MaxFileSize = 1 << 20

// Config is the whole file. Use Default for a config with every default filled in.
type Config struct {
	// DeviceID is the terminal's identity towards the TMS; empty means the board's serial.
	DeviceID string `toml:"device_id"`
	DataDir  string `toml:"data_dir"`
	// Board is "sim", "generic" or a board model registered by a board package.
	Board string `toml:"board"`
	// Devices are the serial devices of a board whose model has no built-in profile
	// ("generic", "sim"): which port is the printer, the PIN pad, the card reader.
	Devices  []board.SerialDevice `toml:"devices"`
	TMS      TMS                  `toml:"tms"`
	Outbox   Outbox               `toml:"outbox"`
	Log      Log                  `toml:"log"`
	Keystore Keystore             `toml:"keystore"`
	License  License              `toml:"license"`
	ECR      ECR                  `toml:"ecr"`
	OTA      OTA                  `toml:"ota"`
	Diag     Diag                 `toml:"diag"`
}

// Diag is the [diag] table: the technician's diagnostics port (web console and API).
type Diag struct {
	// Listen is host:port; "off" disables the port. The default is loopback only: a
	// technician reaches it on the terminal itself or through a USB network link. Any other
	// address requires TLS.
	Listen string `toml:"listen"`
	// CertFile and KeyFile are an operator-supplied HTTPS certificate; empty with a
	// non-loopback Listen: the terminal's own self-signed one, made once and kept in
	// <data_dir>/diag-tls/.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// HistoryInterval is how often resource use is sampled for the console's charts
	// (HistorySamples are kept).
	HistoryInterval Duration `toml:"history_interval"`
}

// HistorySamples is how many resource samples the diagnostics port keeps (an hour at the
// default interval).
const HistorySamples = 360

// DiagOff reports whether the diagnostics port is disabled.
func (c *Config) DiagOff() bool { return c.Diag.Listen == "off" }

// DiagTLS reports whether the diagnostics port serves HTTPS: always with a certificate
// configured, and always on an address other than loopback, where a password or a token
// would otherwise cross the shop's network in clear.
func (c *Config) DiagTLS() bool {
	if c.Diag.CertFile != "" {
		return true
	}
	return !loopbackListen(c.Diag.Listen)
}

// loopbackListen reports whether a host:port only binds loopback addresses.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OTA is the [ota] table: local facts the updater needs that the TMS cannot know.
type OTA struct {
	// ComponentInstaller overrides the board profile's system component installer: the
	// command line, "{file}", "{name}" and "{version}" substituted.
	ComponentInstaller []string `toml:"component_installer"`
	// PackageManager is the Android package manager command; empty: "pm" on Android, none
	// elsewhere (apps.set then fails as not supported).
	PackageManager string `toml:"package_manager"`
	// Locations map file.put location names to directories; the defaults images, lang,
	// params and certs live under <data_dir>/files/.
	Locations map[string]string `toml:"locations"`
	// MaxComponentSize bounds one downloaded component.
	MaxComponentSize ByteSize `toml:"max_component_size"`
}

// ECR is the [ecr] table: where the cash-register API listens. What it offers (port,
// protected mode, allowed networks) is the TMS's terminal configuration.
type ECR struct {
	// Listen overrides the address: "" means all interfaces on the configured port;
	// "127.0.0.1:0" (tests, the demo) a free loopback port; "off" no API at all.
	Listen string `toml:"listen"`
	// CertFile and KeyFile are an operator-supplied HTTPS certificate for protected mode;
	// empty: the terminal's own self-signed one, kept in the data directory.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// License is the [license] table: whose licences the terminal accepts.
type License struct {
	// ReleaseKeys are the distributor's Ed25519 keys that sign licences (and releases):
	// separate from the TMS command keys, so a compromised TMS cannot license itself.
	ReleaseKeys []CommandKey `toml:"release_keys"`
}

// Keystore is the [keystore] table: where the payment keys live.
type Keystore struct {
	// Backend is "auto" (the PIN pad when the board has one, else software), "pinpad" or
	// "software".
	Backend string `toml:"backend"`
	// RootKeyFile holds the software backend's device root key (created on first use, 0600);
	// empty means <data_dir>/keystore.root.
	RootKeyFile string `toml:"root_key_file"`
	// TransportKeyFile is the factory injection of the software backend's transport key: hex
	// of a TDES (16/24 bytes) or AES (16/24/32 bytes, prefixed "aes:") key, read when the
	// backend has none.
	TransportKeyFile string `toml:"transport_key_file"`
}

// TMS is the [tms] table: how to reach and trust the Terminal Management System.
type TMS struct {
	Broker             string       `toml:"broker"`
	Username           string       `toml:"username"`
	Password           string       `toml:"password"`
	PasswordFile       string       `toml:"password_file"`
	CAFile             string       `toml:"ca_file"`
	CertFile           string       `toml:"cert_file"`
	KeyFile            string       `toml:"key_file"`
	ServerName         string       `toml:"server_name"`
	InsecureSkipVerify bool         `toml:"insecure_skip_verify"`
	KeepAlive          Duration     `toml:"keepalive"`
	PingTimeout        Duration     `toml:"ping_timeout"`
	ConnectTimeout     Duration     `toml:"connect_timeout"`
	BackoffBase        Duration     `toml:"backoff_base"`
	BackoffCap         Duration     `toml:"backoff_cap"`
	StatsInterval      Duration     `toml:"stats_interval"`
	ReplayWindow       int          `toml:"replay_window"`
	CommandKeys        []CommandKey `toml:"command_keys"`
}

// CommandKey is one [[tms.command_keys]] entry: a trusted command-signing key.
type CommandKey struct {
	ID string `toml:"id"`
	// PublicKey is the base64 of a raw 32-byte Ed25519 public key.
	PublicKey string `toml:"public_key"`
}

// Outbox is the [outbox] table: bounds of the durable uplink queue.
type Outbox struct {
	MaxRecords int      `toml:"max_records"`
	MaxBytes   ByteSize `toml:"max_bytes"`
	Inflight   int      `toml:"inflight"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
	// File is the rotated JSON-lines log; empty means <data_dir>/logs/agent.log, "-" none.
	File    string   `toml:"file"`
	MaxSize ByteSize `toml:"max_size"`
	Keep    int      `toml:"keep"`
}

// Default returns the configuration used for every key the file leaves out.
func Default() *Config {
	return &Config{
		DataDir: "/var/lib/posagent",
		Board:   "generic",
		TMS: TMS{
			Broker:         "tcp://127.0.0.1:1883",
			KeepAlive:      Duration(300 * time.Second),
			PingTimeout:    Duration(20 * time.Second),
			ConnectTimeout: Duration(30 * time.Second),
			BackoffBase:    Duration(2 * time.Second),
			BackoffCap:     Duration(5 * time.Minute),
			StatsInterval:  Duration(time.Hour),
			ReplayWindow:   1024,
		},
		Outbox:   Outbox{MaxRecords: 20000, MaxBytes: 16 << 20, Inflight: 32},
		Log:      Log{Level: "info", Format: "text", MaxSize: 1 << 20, Keep: 3},
		Keystore: Keystore{Backend: "auto"},
		Diag:     Diag{Listen: "127.0.0.1:8091", HistoryInterval: Duration(10 * time.Second)},
	}
}

// UnknownKeysError lists keys in the file that the agent does not know.
type UnknownKeysError struct {
	Path string
	Keys []string
}

func (e *UnknownKeysError) Error() string {
	return fmt.Sprintf("config %s: unknown keys: %s", e.Path, strings.Join(e.Keys, ", "))
}

// Load reads the file at path over the defaults and validates the result. An empty path reads
// DefaultPath if it exists and uses the defaults otherwise; a path given explicitly must exist.
func Load(path string) (*Config, error) {
	c, err := read(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// read is Load without validation, so command-line flags can be applied first.
func read(path string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	data, err := readBounded(path)
	if !explicit && errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return decode(path, data)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// Parse decodes a configuration from data (named name in errors) over the defaults and
// validates it. It is what Load does after reading the file.
func Parse(name string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", name, MaxFileSize)
	}
	c, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func decode(name string, data []byte) (*Config, error) {
	c := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, &UnknownKeysError{Path: name, Keys: keys}
	}
	return c, nil
}

// Username is the MQTT username: tms.username, or the device id when that is empty.
func (c *Config) Username() string {
	if c.TMS.Username != "" {
		return c.TMS.Username
	}
	return c.DeviceID
}

// LogFile is the path of the rotated log file, or "" when file logging is off ("-").
func (c *Config) LogFile() string {
	switch c.Log.File {
	case "-":
		return ""
	case "":
		return filepath.Join(c.DataDir, "logs", "agent.log")
	default:
		return c.Log.File
	}
}

// RootKeyFile is keystore.root_key_file or its default under the data directory.
func (c *Config) RootKeyFile() string {
	if c.Keystore.RootKeyFile != "" {
		return c.Keystore.RootKeyFile
	}
	return filepath.Join(c.DataDir, "keystore.root")
}

// LogLevel is log.level as a slog level (Validate has checked it parses).
func (c *Config) LogLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Log.Level))
	return l
}

// Password is tms.password, or the contents of tms.password_file without its trailing line
// break. Keeping it in a separate file lets the provisioning tool write it with tighter
// permissions than the configuration.
func (c *Config) Password() (string, error) {
	if c.TMS.PasswordFile == "" {
		return c.TMS.Password, nil
	}
	b, err := readBounded(c.TMS.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("config: tms.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// BrokerTLS reports whether the broker URL asks for TLS.
func (c *Config) BrokerTLS() bool {
	u, err := url.Parse(c.TMS.Broker)
	if err != nil {
		return false
	}
	return tlsSchemes[strings.ToLower(u.Scheme)]
}

// Backoff is the reconnect backoff policy of the TMS link.
func (c *Config) Backoff() backoff.Policy {
	return backoff.Policy{Base: c.TMS.BackoffBase.D(), Cap: c.TMS.BackoffCap.D()}
}

// ResolveDeviceID fills an empty device_id with the board's serial number and checks the
// result, so a terminal needs no per-unit configuration file.
func (c *Config) ResolveDeviceID(serial string) error {
	if c.DeviceID == "" {
		if serial == "" {
			return errors.New("config: device_id is not set and the board reports no serial number")
		}
		c.DeviceID = serial
	}
	if err := validDeviceID(c.DeviceID); err != nil {
		return fmt.Errorf("config: device_id: %w", err)
	}
	return nil
}

// KeyError is a trusted key of the configuration that cannot be used.
type KeyError struct {
	Table string // "tms.command_keys" or "license.release_keys"
	Index int
	ID    string
	Err   error
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("%s[%d] (id %q): %v", e.Table, e.Index, e.ID, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// CommandKeys decodes the trusted command keys, by key id.
func (c *Config) CommandKeys() (map[string]ed25519.PublicKey, error) {
	return decodeKeys("tms.command_keys", c.TMS.CommandKeys)
}

// ReleaseKeys decodes the distributor's release keys that sign licences, by key id.
func (c *Config) ReleaseKeys() (map[string]ed25519.PublicKey, error) {
	return decodeKeys("license.release_keys", c.License.ReleaseKeys)
}

func decodeKeys(table string, list []CommandKey) (map[string]ed25519.PublicKey, error) {
	keys := make(map[string]ed25519.PublicKey, len(list))
	for i, k := range list {
		if k.ID == "" {
			return nil, &KeyError{Table: table, Index: i, Err: errors.New("id is empty")}
		}
		if _, dup := keys[k.ID]; dup {
			return nil, &KeyError{Table: table, Index: i, ID: k.ID, Err: errors.New("id used twice")}
		}
		pub, err := decodePublicKey(k.PublicKey)
		if err != nil {
			return nil, &KeyError{Table: table, Index: i, ID: k.ID, Err: err}
		}
		keys[k.ID] = pub
	}
	return keys, nil
}

func decodePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("public_key is empty")
	}
	// Padded or not: tools differ, and both are unambiguous for 32 bytes.
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("public_key is not valid base64: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public_key is %d bytes, want a raw %d-byte Ed25519 key", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ServerName is the name the broker's TLS certificate must carry: tms.server_name, or the
// broker URL's host.
func (c *Config) ServerName() string {
	if c.TMS.ServerName != "" {
		return c.TMS.ServerName
	}
	u, err := url.Parse(c.TMS.Broker)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
