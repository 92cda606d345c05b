// Command posdemo runs the whole system on one machine: an embedded MQTT broker standing in
// for the TMS broker, and the real posagent binary on the simulated board. Demo keys and
// passwords are made on the first run and kept in the demo folder, so later runs keep the
// agent's identity, outbox and configuration.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/internal/broker"
	"github.com/posagent/posagent/internal/tmsclient"
)

const (
	deviceID = "SIM000001"
	tmsUser  = "tms"
	keyID    = "demo-cmd"
)

func main() {
	dir := flag.String("dir", ".demo", "folder for the demo's keys, passwords and data")
	addr := flag.String("addr", "127.0.0.1:1883", "broker listen address (a free port is taken if it is busy)")
	agentBin := flag.String("agent", "", "posagent binary (default: next to this program)")
	flag.Parse()
	if err := run(*dir, *addr, *agentBin); err != nil {
		fmt.Fprintln(os.Stderr, "posdemo:", err)
		os.Exit(1)
	}
}

func run(dir, addr, agentBin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if agentBin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		agentBin = filepath.Join(filepath.Dir(self), "posagent")
	}
	devicePW, err := secret(filepath.Join(dir, "device.password"))
	if err != nil {
		return err
	}
	tmsPW, err := secret(filepath.Join(dir, "tms.password"))
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "keys", keyID+".key")
	var key tmsclient.SignKey
	if _, err = os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(keyPath), 0o700); err == nil {
			key, err = tmsclient.GenerateKey(filepath.Dir(keyPath), keyID)
		}
	} else if err == nil {
		key, err = tmsclient.LoadSignKey(keyPath)
	}
	if err != nil {
		return fmt.Errorf("demo command key: %w", err)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
	} else {
		addr = "127.0.0.1:0"
	}
	b, err := broker.Start(ctx, broker.Options{
		Addr: addr, Users: map[string]string{deviceID: devicePW, tmsUser: tmsPW},
		TMSUsers: []string{tmsUser}, DataDir: filepath.Join(dir, "broker"), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer b.Close()
	brokerURL := "tcp://" + b.Addr()

	devices, closeDevices, err := startEmulators(dir, log)
	if err != nil {
		return err
	}
	defer closeDevices()

	cfgPath := filepath.Join(dir, "posagent.toml")
	if err := writeAgentConfig(cfgPath, dir, brokerURL, key, devices); err != nil {
		return err
	}
	examplePath := filepath.Join(dir, "config-v2.json")
	if err := writeExampleConfig(examplePath); err != nil {
		return err
	}

	agent := exec.Command(agentBin, "run", "--config", cfgPath)
	agent.Stdout, agent.Stderr = os.Stdout, os.Stderr
	if err := agent.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run `make build` first)", agentBin, err)
	}
	printNext(dir, brokerURL, tmsPW, examplePath)

	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	select {
	case <-ctx.Done():
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
		}
		return nil
	case err := <-exited:
		return fmt.Errorf("the agent exited: %v", err)
	}
}

// secret reads a demo password, making a random one on the first run.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// writeAgentConfig writes the agent's configuration. The broker URL may change between runs
// (a busy port), so the file is rewritten every time.
func writeAgentConfig(path, dir, brokerURL string, key tmsclient.SignKey, devices string) error {
	cfg := fmt.Sprintf(`# Written by posdemo on every start; see docs/configuration.md.
device_id = %q
data_dir = %q
board = "sim"

[tms]
broker = %q
password_file = %q
# Short intervals so the demo shows something; production defaults are in the docs.
stats_interval = "60s"
keepalive = "60s"
backoff_base = "500ms"
backoff_cap = "10s"

[[tms.command_keys]]
id = %q
public_key = %q

[log]
level = "info"
%s`, deviceID, filepath.Join(dir, "data"), brokerURL, filepath.Join(dir, "device.password"),
		key.ID, tmsclient.PublicKeyBase64(key.Public()), devices)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// startEmulators attaches the PIN pad, card reader and printer emulators on pseudo-terminals under
// dir/dev and returns the [[devices]] entries that point the agent at them. The pad keeps its
// keys in dir so a demo terminal keeps them across runs; it types 1234 when asked for a PIN.
func startEmulators(dir string, log *slog.Logger) (devices string, closeAll func(), err error) {
	devDir := filepath.Join(dir, "dev")
	if err := os.MkdirAll(devDir, 0o700); err != nil {
		return "", nil, err
	}
	pad, err := pinpademu.New(pinpademu.Options{Dir: devDir, KeyFile: filepath.Join(dir, "pinpad-keys"),
		DefaultPIN: "1234", Logger: log})
	if err != nil {
		return "", nil, fmt.Errorf("PIN pad emulator: %w", err)
	}
	line, err := pty.Open(devDir, "cardreader")
	if err != nil {
		pad.Close()
		return "", nil, fmt.Errorf("card reader line: %w", err)
	}
	reader := cardemu.Start(line, cardemu.Default(), cardemu.Options{Logger: log})
	pline, err := pty.Open(devDir, "printer")
	if err != nil {
		reader.Close()
		pad.Close()
		return "", nil, fmt.Errorf("printer line: %w", err)
	}
	// Each printed receipt lands in dir/receipts as text and as a PNG picture.
	printer, err := printeremu.New(pline, printeremu.Config{Baud: 115200, OutDir: filepath.Join(dir, "receipts")})
	if err != nil {
		reader.Close()
		pad.Close()
		return "", nil, fmt.Errorf("printer emulator: %w", err)
	}
	devices = fmt.Sprintf(`
# Emulators attached by posdemo on pseudo-terminals.
[[devices]]
name = "pinpad"
kind = "pinpad"
[devices.port]
path = %q
baud = 115200

[[devices]]
name = "cardreader"
kind = "cardreader"
[devices.port]
path = %q
baud = 115200

[[devices]]
name = "printer"
kind = "printer"
[devices.port]
path = %q
baud = 115200
`, pad.Path(), line.Path(), pline.Path())
	return devices, func() { printer.Close(); reader.Close(); pad.Close() }, nil
}

// writeExampleConfig writes a terminal configuration document (the factory one, as version 2)
// to try config.apply with.
func writeExampleConfig(path string) error {
	doc := termconfig.Default()
	doc.Version = 2
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func printNext(dir, brokerURL, tmsPW, examplePath string) {
	conn := fmt.Sprintf("--broker %s --username %s --password %s", brokerURL, tmsUser, tmsPW)
	key := filepath.Join(dir, "keys", keyID+".key")
	fmt.Printf(`
posdemo: broker on %s, agent %s on the simulated board
(PIN pad, card reader and receipt printer emulated on pseudo-terminals).

Try, in another terminal:
  bin/tmsctl watch %s --device %s
  bin/tmsctl send  %s --device %s --sign-key %s stats.now
  bin/tmsctl send  %s --device %s --sign-key %s --body %s config.apply
  bin/tmsctl send  %s --device %s --sign-key %s selftest
  bin/tmsctl send  %s --device %s --sign-key %s print.test   (the page lands in %s)
  bin/tmsctl send  %s --device %s --sign-key %s reboot

Ctrl-C stops the demo; its state stays in %s.

`, brokerURL, deviceID, conn, deviceID, conn, deviceID, key, conn, deviceID, key, examplePath,
		conn, deviceID, key, conn, deviceID, key, filepath.Join(dir, "receipts"), conn, deviceID, key, dir)
}
