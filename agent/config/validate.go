package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/posagent/posagent/board"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key     string // dotted key, e.g. "tms.keepalive"
	Message string
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// ValidationError lists every problem found, so one edit fixes them all.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "config: " + strings.Join(parts, "; ")
}

var tlsSchemes = map[string]bool{"ssl": true, "tls": true, "mqtts": true, "wss": true}

var brokerSchemes = map[string]bool{"tcp": true, "mqtt": true, "ws": true, "ssl": true, "tls": true, "mqtts": true, "wss": true}

var otaLocationRe = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

func validDeviceID(id string) error { return tmsproto.ValidDeviceID(id) }

// ErrBrokerURL is a broker address that is not a URL such as tcp://host:1883.
var ErrBrokerURL = errors.New("not a broker URL such as tcp://host:1883 or ssl://host:8883")

// ValidBroker checks a TMS broker URL as tms.broker is checked (the diagnostics port's
// tmsBroker parameter uses it too). Errors wrap ErrBrokerURL.
func ValidBroker(broker string) error {
	u, err := url.Parse(broker)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%q: %w", broker, ErrBrokerURL)
	}
	if !brokerSchemes[strings.ToLower(u.Scheme)] {
		return fmt.Errorf("scheme %q not supported (tcp, mqtt, ssl, tls, mqtts, ws, wss): %w", u.Scheme, ErrBrokerURL)
	}
	if u.User != nil {
		// Credentials belong in tms.username/password, never in an address that is shown.
		return fmt.Errorf("%q carries credentials: %w", u.Redacted(), ErrBrokerURL)
	}
	if host, port, err := net.SplitHostPort(u.Host); err != nil || host == "" || port == "" {
		return fmt.Errorf("%q needs a host and a port: %w", broker, ErrBrokerURL)
	}
	return nil
}

// Validate checks the whole configuration and returns a *ValidationError naming every problem,
// or nil.
func (c *Config) Validate() error {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}

	if c.DeviceID != "" {
		if err := validDeviceID(c.DeviceID); err != nil {
			bad("device_id", "%v", err)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "must not be empty")
	}
	if strings.TrimSpace(c.Board) == "" {
		bad("board", "must not be empty")
	}
	names := map[string]bool{}
	for i, d := range c.Devices {
		key := fmt.Sprintf("devices[%d]", i)
		switch {
		case d.Name == "":
			bad(key+".name", "must not be empty")
		case names[d.Name]:
			bad(key+".name", "%q appears twice", d.Name)
		}
		names[d.Name] = true
		if d.Kind != board.KindPrinter && d.Kind != board.KindPINPad && d.Kind != board.KindCardReader {
			bad(key+".kind", "%q is not %s, %s or %s", d.Kind, board.KindPrinter, board.KindPINPad, board.KindCardReader)
		}
		if err := d.Port.Validate(); err != nil {
			bad(key+".port", "%v", err)
		}
	}

	for name, dir := range c.OTA.Locations {
		if !otaLocationRe.MatchString(name) {
			bad("ota.locations."+name, "location names are [a-z0-9_-]{1,32}")
		}
		if !filepath.IsAbs(dir) {
			bad("ota.locations."+name, "%q is not an absolute directory", dir)
		}
	}
	if c.OTA.MaxComponentSize < 0 {
		bad("ota.max_component_size", "must not be negative")
	}

	t := &c.TMS
	isTLS := false
	if u, err := url.Parse(t.Broker); err != nil || u.Scheme == "" {
		bad("tms.broker", "%q is not a URL such as tcp://host:1883 or ssl://host:8883", t.Broker)
	} else {
		scheme := strings.ToLower(u.Scheme)
		isTLS = tlsSchemes[scheme]
		if !brokerSchemes[scheme] {
			bad("tms.broker", "scheme %q not supported (tcp, mqtt, ssl, tls, mqtts, ws, wss)", u.Scheme)
		} else if host, port, err := net.SplitHostPort(u.Host); err != nil || host == "" || port == "" {
			bad("tms.broker", "%q needs a host and a port", t.Broker)
		}
	}
	if t.Username != "" && strings.ContainsAny(t.Username, "\x00\r\n") {
		bad("tms.username", "contains control characters")
	}
	if t.Password != "" && t.PasswordFile != "" {
		bad("tms.password", "set either password or password_file, not both")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tms.cert_file", "cert_file and key_file go together (mutual TLS)")
	}
	if !isTLS {
		// TLS settings on a plain connection mean the operator believes the link is protected.
		for _, o := range []struct {
			key string
			set bool
		}{
			{"tms.ca_file", t.CAFile != ""}, {"tms.cert_file", t.CertFile != ""}, {"tms.key_file", t.KeyFile != ""},
			{"tms.server_name", t.ServerName != ""}, {"tms.insecure_skip_verify", t.InsecureSkipVerify},
		} {
			if o.set {
				bad(o.key, "is a TLS setting but tms.broker is not ssl://, tls://, mqtts:// or wss://")
			}
		}
	}
	positive := func(key string, d Duration, min time.Duration) {
		if d.D() < min {
			bad(key, "%v is below the minimum %v", d, min)
		}
	}
	positive("tms.keepalive", t.KeepAlive, time.Second) // MQTT counts keepalive in whole seconds
	positive("tms.ping_timeout", t.PingTimeout, time.Millisecond)
	positive("tms.connect_timeout", t.ConnectTimeout, time.Millisecond)
	positive("tms.backoff_base", t.BackoffBase, time.Millisecond)
	positive("tms.backoff_cap", t.BackoffCap, time.Millisecond)
	positive("tms.stats_interval", t.StatsInterval, time.Second)
	if t.BackoffCap < t.BackoffBase {
		bad("tms.backoff_cap", "%v is below backoff_base %v", t.BackoffCap, t.BackoffBase)
	}
	if t.KeepAlive.D() > 18*time.Hour {
		bad("tms.keepalive", "%v is above the MQTT maximum of 65535s", t.KeepAlive)
	}
	if t.ReplayWindow < 1 || t.ReplayWindow > 1_000_000 {
		bad("tms.replay_window", "%d is outside 1..1000000", t.ReplayWindow)
	}
	if _, err := c.CommandKeys(); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			bad(fmt.Sprintf("tms.command_keys[%d]", ke.Index), "%v", ke.Err)
		} else {
			bad("tms.command_keys", "%v", err)
		}
	}

	o := &c.Outbox
	if o.MaxRecords < 1 {
		bad("outbox.max_records", "%d must be at least 1", o.MaxRecords)
	}
	if o.MaxBytes < 64<<10 {
		bad("outbox.max_bytes", "%v is below the minimum 64KiB", o.MaxBytes)
	}
	if o.Inflight < 1 || o.Inflight > 65535 {
		// MQTT packet ids are 16-bit: no more messages can be unacknowledged at once.
		bad("outbox.inflight", "%d is outside 1..65535", o.Inflight)
	}

	l := &c.Log
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		bad("log.level", "%q is not debug, info, warn or error", l.Level)
	}
	if l.Format != "text" && l.Format != "json" {
		bad("log.format", "%q is not text or json", l.Format)
	}
	if l.MaxSize < 4<<10 {
		bad("log.max_size", "%v is below the minimum 4KiB", l.MaxSize)
	}
	if l.Keep < 0 || l.Keep > 100 {
		bad("log.keep", "%d is outside 0..100", l.Keep)
	}

	switch c.Keystore.Backend {
	case "auto", "pinpad", "software":
	default:
		bad("keystore.backend", "%q is not auto, pinpad or software", c.Keystore.Backend)
	}

	if e := c.ECR; e.Listen != "" && e.Listen != "off" {
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			bad("ecr.listen", "%q is not host:port or off", e.Listen)
		}
	}
	if (c.ECR.CertFile == "") != (c.ECR.KeyFile == "") {
		bad("ecr.cert_file", "cert_file and key_file go together")
	}

	if d := c.Diag; d.Listen != "off" {
		if host, port, err := net.SplitHostPort(d.Listen); err != nil || port == "" {
			bad("diag.listen", "%q is not host:port or off", d.Listen)
		} else if host == "" {
			// An empty host binds every interface: say so explicitly (0.0.0.0 or [::]).
			bad("diag.listen", "%q has no host: write 0.0.0.0:%s to listen on every interface", d.Listen, port)
		}
	}
	if (c.Diag.CertFile == "") != (c.Diag.KeyFile == "") {
		bad("diag.cert_file", "cert_file and key_file go together")
	}
	if iv := c.Diag.HistoryInterval.D(); iv < time.Second || iv > time.Hour {
		bad("diag.history_interval", "%v is outside 1s..1h", c.Diag.HistoryInterval)
	}

	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}
