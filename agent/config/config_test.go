package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	var keys []string
	for _, p := range ve.Problems {
		keys = append(keys, p.Key)
	}
	return keys
}

func TestDefaultsAreValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.TMS.KeepAlive.D() != 300*time.Second || c.TMS.BackoffCap.D() != 5*time.Minute ||
		c.Outbox.MaxBytes != 16<<20 || c.Log.MaxSize != 1<<20 || c.TMS.ReplayWindow != 1024 {
		t.Errorf("unexpected defaults: %+v", c)
	}
	// An empty file is the defaults.
	got, err := Parse("empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("empty file = %+v, want defaults", got)
	}
}

func TestExampleFileLoads(t *testing.T) {
	c, err := Load("../../docs/posagent.example.toml")
	if err != nil {
		t.Fatalf("example file: %v", err)
	}
	if c.DeviceID != "SIM000001" || !c.BrokerTLS() || c.ServerName() != "tms.example.com" {
		t.Errorf("example file loaded as %+v", c)
	}
	keys, err := c.CommandKeys()
	if err != nil || len(keys["tms-cmd-1"]) != ed25519.PublicKeySize {
		t.Errorf("example keys = %v, %v", keys, err)
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	p := writeFile(t, "c.toml", `
device_id = "T-100_a"
board = "sim"
[tms]
broker = "tcp://broker.local:1884"
keepalive = "1m"
backoff_base = "500ms"
[outbox]
max_bytes = 1048576
[log]
file = "-"
level = "debug"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "T-100_a" || c.Board != "sim" || c.TMS.Broker != "tcp://broker.local:1884" ||
		c.TMS.KeepAlive.D() != time.Minute || c.TMS.BackoffBase.D() != 500*time.Millisecond ||
		c.Outbox.MaxBytes != 1<<20 || c.LogFile() != "" {
		t.Errorf("loaded %+v", c)
	}
	// Keys the file leaves out keep their defaults.
	if c.TMS.PingTimeout.D() != 20*time.Second || c.Outbox.Inflight != 32 || c.DataDir != "/var/lib/posagent" {
		t.Errorf("defaults lost: %+v", c)
	}
	if c.LogLevel().String() != "DEBUG" {
		t.Errorf("LogLevel = %v", c.LogLevel())
	}
	if c.Username() != "T-100_a" {
		t.Errorf("Username = %q, want the device id", c.Username())
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("explicit missing file: %v, want ErrNotExist", err)
	}

	old := DefaultPath
	t.Cleanup(func() { DefaultPath = old })
	DefaultPath = filepath.Join(t.TempDir(), "absent.toml")
	c, err := Load("")
	if err != nil {
		t.Fatalf("missing default file: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("got %+v, want defaults", c)
	}

	DefaultPath = writeFile(t, "default.toml", `board = "sim"`)
	if c, err := Load(""); err != nil || c.Board != "sim" {
		t.Fatalf("present default file: %+v, %v", c, err)
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	p := writeFile(t, "c.toml", `
colour = "red"
[tms]
brokr = "tcp://x:1"
[[tms.command_keys]]
id = "a"
public_key = "`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"
kid = "oops"
[extra]
x = 1
`)
	_, err := Load(p)
	var uk *UnknownKeysError
	if !errors.As(err, &uk) {
		t.Fatalf("err = %v, want *UnknownKeysError", err)
	}
	for _, k := range []string{"colour", "tms.brokr", "tms.command_keys.kid", "extra"} {
		if !slices.Contains(uk.Keys, k) {
			t.Errorf("unknown keys %v lack %q", uk.Keys, k)
		}
		if !strings.Contains(err.Error(), k) {
			t.Errorf("message %q lacks %q", err, k)
		}
	}
}

func TestSyntaxAndTypeErrors(t *testing.T) {
	for name, content := range map[string]string{
		"syntax":          "board = ",
		"duration number": "[tms]\nkeepalive = 300",
		"duration junk":   "[tms]\nkeepalive = \"five minutes\"",
		"size junk":       "[outbox]\nmax_bytes = \"lots\"",
		"size negative":   "[outbox]\nmax_bytes = -5",
		"size float":      "[outbox]\nmax_bytes = 1.5",
		"wrong type":      "board = 3",
	} {
		if _, err := Parse(name, []byte(content)); err == nil {
			t.Errorf("%s: accepted %q", name, content)
		}
	}
	if _, err := Parse("big", make([]byte, MaxFileSize+1)); err == nil {
		t.Error("oversized input accepted")
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	c := Default()
	c.DeviceID = "bad id!"
	c.DataDir = ""
	c.Board = " "
	c.TMS.Broker = "http://x:1"
	c.TMS.Password, c.TMS.PasswordFile = "p", "/f"
	c.TMS.CAFile = "/ca.pem" // a TLS setting without a TLS broker
	c.TMS.CertFile = "/c.pem"
	c.TMS.KeepAlive = 0
	c.TMS.BackoffBase = Duration(time.Minute)
	c.TMS.BackoffCap = Duration(time.Second)
	c.TMS.ReplayWindow = 0
	c.TMS.CommandKeys = []CommandKey{{ID: "k", PublicKey: "!!"}}
	c.Outbox.MaxRecords = 0
	c.Outbox.MaxBytes = 10
	c.Outbox.Inflight = 70000
	c.Log.Level = "loud"
	c.Log.Format = "xml"
	c.Log.MaxSize = 1
	c.Log.Keep = -1
	keys := problemKeys(t, c.Validate())
	for _, want := range []string{"device_id", "data_dir", "board", "tms.broker", "tms.password",
		"tms.cert_file", "tms.ca_file", "tms.keepalive", "tms.backoff_cap", "tms.replay_window",
		"tms.command_keys[0]", "outbox.max_records", "outbox.max_bytes", "outbox.inflight",
		"log.level", "log.format", "log.max_size", "log.keep"} {
		if !slices.Contains(keys, want) {
			t.Errorf("problems %v lack %q", keys, want)
		}
	}
}

func TestBrokerURLs(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
		tls bool
	}{
		{"tcp://127.0.0.1:1883", true, false},
		{"mqtt://broker:1883", true, false},
		{"ssl://broker.example.com:8883", true, true},
		{"tls://[::1]:8883", true, true},
		{"mqtts://b:8883", true, true},
		{"wss://b:443/mqtt", true, true},
		{"tcp://broker", false, false},
		{"tcp://:1883", false, false},
		{"broker:1883", false, false},
		{"http://b:80", false, false},
		{"", false, false},
	} {
		c := Default()
		c.TMS.Broker = tc.url
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%q: Validate = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if tc.ok && c.BrokerTLS() != tc.tls {
			t.Errorf("%q: BrokerTLS = %v", tc.url, c.BrokerTLS())
		}
	}
}

func TestTLSSettingsNeedTLSBroker(t *testing.T) {
	c := Default()
	c.TMS.InsecureSkipVerify = true
	c.TMS.ServerName = "x"
	keys := problemKeys(t, c.Validate())
	if !slices.Equal(keys, []string{"tms.server_name", "tms.insecure_skip_verify"}) {
		t.Errorf("problems = %v", keys)
	}
	c.TMS.Broker = "ssl://b:8883"
	if err := c.Validate(); err != nil {
		t.Errorf("TLS broker: %v", err)
	}
	if c.ServerName() != "x" {
		t.Errorf("ServerName = %q", c.ServerName())
	}
}

func TestCommandKeys(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	padded := base64.StdEncoding.EncodeToString(pub)
	raw := base64.RawStdEncoding.EncodeToString(pub)

	c := Default()
	c.TMS.CommandKeys = []CommandKey{{ID: "a", PublicKey: padded}, {ID: "b", PublicKey: " " + raw + "\n"}}
	keys, err := c.CommandKeys()
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(keys["a"]) || !pub.Equal(keys["b"]) || len(keys) != 2 {
		t.Errorf("keys = %v", keys)
	}

	for name, tc := range map[string]struct {
		keys []CommandKey
		want string
	}{
		"bad base64": {[]CommandKey{{ID: "a", PublicKey: "not*base64"}}, "not valid base64"},
		"short":      {[]CommandKey{{ID: "a", PublicKey: base64.StdEncoding.EncodeToString(pub[:31])}}, "31 bytes"},
		"long":       {[]CommandKey{{ID: "a", PublicKey: base64.StdEncoding.EncodeToString(append(pub, 0))}}, "33 bytes"},
		"empty key":  {[]CommandKey{{ID: "a"}}, "empty"},
		"no id":      {[]CommandKey{{PublicKey: padded}}, "id is empty"},
		"dup id":     {[]CommandKey{{ID: "a", PublicKey: padded}, {ID: "a", PublicKey: padded}}, "twice"},
	} {
		c.TMS.CommandKeys = tc.keys
		_, err := c.CommandKeys()
		var ke *KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a KeyError mentioning %q", name, err, tc.want)
		}
	}
}

func TestAccessors(t *testing.T) {
	c := Default()
	c.DataDir = "/data"
	if got := c.LogFile(); got != "/data/logs/agent.log" {
		t.Errorf("LogFile = %q", got)
	}
	c.Log.File = "/tmp/x.log"
	if got := c.LogFile(); got != "/tmp/x.log" {
		t.Errorf("LogFile = %q", got)
	}
	c.TMS.Username = "user"
	if c.Username() != "user" {
		t.Errorf("Username = %q", c.Username())
	}
	if p := c.Backoff(); p.Base != 2*time.Second || p.Cap != 5*time.Minute {
		t.Errorf("Backoff = %+v", p)
	}
	if c.ServerName() != "127.0.0.1" {
		t.Errorf("ServerName = %q", c.ServerName())
	}

	c.TMS.Password = "inline"
	if pw, err := c.Password(); err != nil || pw != "inline" {
		t.Errorf("Password = %q, %v", pw, err)
	}
	c.TMS.Password = ""
	c.TMS.PasswordFile = writeFile(t, "pw", "s3cret\r\n")
	if pw, err := c.Password(); err != nil || pw != "s3cret" {
		t.Errorf("Password from file = %q, %v", pw, err)
	}
	c.TMS.PasswordFile = filepath.Join(t.TempDir(), "missing")
	if _, err := c.Password(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing password file: %v", err)
	}
}

func TestResolveDeviceID(t *testing.T) {
	c := Default()
	if err := c.ResolveDeviceID("SN12345"); err != nil || c.DeviceID != "SN12345" {
		t.Errorf("from serial: %q, %v", c.DeviceID, err)
	}
	if err := c.ResolveDeviceID("OTHER"); err != nil || c.DeviceID != "SN12345" {
		t.Errorf("configured id must win: %q, %v", c.DeviceID, err)
	}
	c.DeviceID = ""
	if err := c.ResolveDeviceID(""); err == nil {
		t.Error("no id and no serial accepted")
	}
	c.DeviceID = ""
	if err := c.ResolveDeviceID("SN 1/2"); err == nil {
		t.Error("serial with invalid characters accepted")
	}
}

func TestFromArgsFlagsOverrideOnlyWhenSet(t *testing.T) {
	p := writeFile(t, "c.toml", `
device_id = "FILE1"
board = "generic"
data_dir = "/file/dir"
[tms]
broker = "tcp://file:1883"
[log]
level = "warn"
`)
	set := flag.NewFlagSet("run", flag.ContinueOnError)
	verbose := set.Bool("verbose", false, "a flag of the caller")
	c, err := FromArgs([]string{"--config", p, "--board", "sim", "--broker", "tcp://flag:1883", "--verbose"}, set)
	if err != nil {
		t.Fatal(err)
	}
	if c.Board != "sim" || c.TMS.Broker != "tcp://flag:1883" {
		t.Errorf("set flags not applied: %+v", c)
	}
	if c.DeviceID != "FILE1" || c.DataDir != "/file/dir" || c.Log.Level != "warn" {
		t.Errorf("unset flags overrode the file: %+v", c)
	}
	if !*verbose {
		t.Error("caller's flag not parsed")
	}

	c, err = FromArgs([]string{"--config", p, "--device-id", "X", "--data-dir", "/d", "--log-level", "debug"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "X" || c.DataDir != "/d" || c.Log.Level != "debug" || c.LogFile() != "/d/logs/agent.log" {
		t.Errorf("flags: %+v", c)
	}

	// A flag value is validated like a file value.
	if _, err := FromArgs([]string{"--config", p, "--log-level", "chatty"}, nil); err == nil {
		t.Error("invalid --log-level accepted")
	}
	if _, err := FromArgs([]string{"--config", p, "extra"}, nil); err == nil {
		t.Error("positional argument accepted")
	}
	if _, err := FromArgs([]string{"--config", filepath.Join(t.TempDir(), "none.toml")}, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing --config file: %v", err)
	}
	quiet := flag.NewFlagSet("run", flag.ContinueOnError)
	quiet.SetOutput(new(strings.Builder))
	if _, err := FromArgs([]string{"-h"}, quiet); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// TestDocsNameEveryKey keeps docs/configuration.md in step with the struct.
func TestDocsNameEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			key := f.Tag.Get("toml")
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if !strings.Contains(string(doc), "`["+prefix+key) && !strings.Contains(string(doc), "`[["+prefix+key) {
					t.Errorf("docs lack table [%s%s]", prefix, key)
				}
				walk(prefix+key+".", ft)
				continue
			}
			if !strings.Contains(string(doc), "| `"+key+"` |") {
				t.Errorf("docs lack key %s%s", prefix, key)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}
