// Command posdemo runs the whole system on one machine: an embedded MQTT broker standing in
// for the TMS broker, the acquirer host simulator (with its QR host), and the real posagent
// binary on the simulated board with its PIN pad, card reader and printer emulated, and its
// cash-register API on 127.0.0.1:8080. Once the agent is online posdemo provisions it as the
// TMS would (master key, licence, terminal configuration) and the agent signs in to the host
// by itself. A simulated customer taps a demo card whenever the terminal asks for one, so
// `posagent ecr pay 1500` pays end to end. Demo keys and passwords are made on the first run and
// kept in the demo folder, so later runs keep the agent's identity, keys, outbox, configuration
// and the host's ledger.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

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
	ecrAddr := flag.String("ecr", defaultECRAddr, "cash-register API listen address (a free port on the same host is taken if it is busy)")
	tap := flag.Bool("tap", true, "tap a demo card whenever the terminal waits for one (off: pay by QR, the host's customer pays after -qr-pay-delay)")
	tapCard := flag.String("card", defaultTapCard, "the demo card tapped (board/sim/cardemu/testdata/cards.json)")
	tapDelay := flag.Duration("tap-delay", 2*time.Second, "from the terminal asking for a card to the tap")
	qrPay := flag.Duration("qr-pay-delay", 15*time.Second, "when the host's simulated customer pays a QR order (negative: never)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, options{Dir: *dir, Addr: *addr, AgentBin: *agentBin, Out: os.Stdout, AgentOut: os.Stdout, Log: os.Stderr,
		ECRAddr: *ecrAddr, Tap: *tap, TapCard: *tapCard, TapDelay: *tapDelay, QRPayDelay: *qrPay})
	if err != nil {
		fmt.Fprintln(os.Stderr, "posdemo:", err)
		os.Exit(1)
	}
}

// options are what a run of the demo needs; main fills them from the flags, tests by hand.
type options struct {
	Dir      string    // the demo folder
	Addr     string    // broker address to try first ("127.0.0.1:0": any free port)
	AgentBin string    // posagent binary; empty: next to this program
	Out      io.Writer // posdemo's own lines
	AgentOut io.Writer // the agent's standard output and error
	Log      io.Writer // warnings of the broker, the host and the TMS client
	// ECRAddr is where the agent's cash-register API listens ("": 127.0.0.1:8080; port 0: any
	// free one); a busy port moves it to a free one, with a note.
	ECRAddr string
	// Tap makes the simulated customer tap TapCard (default unionpay-debit) TapDelay after
	// the terminal asks for a card.
	Tap      bool
	TapCard  string
	TapDelay time.Duration
	// QRPayDelay is when the host's simulated customer pays a QR order (0: the host's
	// default, 3 s; negative: never).
	QRPayDelay time.Duration
	// Ready, when set, is called once the agent is provisioned and signed in.
	Ready func(demoInfo)
}

// demoInfo is where a running demo can be reached.
type demoInfo struct {
	Dir         string
	BrokerURL   string
	TMSPassword string
	Key         tmsclient.SignKey // the TMS command key the agent trusts
	HostAddr    string            // hostsim ISO 8583
	HostHTTP    string            // hostsim QR and control API
	ECRURL      string            // the agent's cash-register API
	ECRNote     string            // why it is not where it was asked to be ("" when it is)
	Tap         string            // the card the simulated customer taps ("" when off)
	ECRErr      error             // /v2/deviceinfo did not answer once the agent was ready
	DiagURL     string            // the technician's diagnostics port
	DiagNote    string            // why it is not on the default port ("" when it is)
	TokenFile   string            // a technician token for it
	ConfigFile  string            // the agent's configuration
}

// run is the whole demo: it returns nil when ctx ends, an error when something cannot start
// or the agent exits by itself.
func run(ctx context.Context, o options) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.AgentOut == nil {
		o.AgentOut = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	agentBin := o.AgentBin
	if agentBin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		agentBin = filepath.Join(filepath.Dir(self), "posagent")
	}
	sec, err := loadSecrets(dir)
	if err != nil {
		return err
	}
	defer sec.wipe()

	log := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	addr := o.Addr
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
	} else {
		addr = "127.0.0.1:0"
	}
	// The broker outlives ctx: it stops last, once the agent and the TMS client are gone.
	bctx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	b, err := broker.Start(bctx, broker.Options{
		Addr: addr, Users: map[string]string{deviceID: sec.devicePW, tmsUser: sec.tmsPW},
		TMSUsers: []string{tmsUser}, DataDir: filepath.Join(dir, "broker"), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer b.Close()
	brokerURL := "tcp://" + b.Addr()

	ecrAddr, ecrNote, err := ecrListen(o.ECRAddr)
	if err != nil {
		return err
	}
	diagAddr, diagNote, err := freeAddr(defaultDiagAddr, "The technician's diagnostics port", "the [diag] listen of the agent's configuration")
	if err != nil {
		return fmt.Errorf("diagnostics port %w", err)
	}
	tokenPath, err := issueTechToken(dir, sec.cmdKey, time.Now())
	if err != nil {
		return err
	}
	host, err := startHost(dir, sec.kek, o.QRPayDelay, log)
	if err != nil {
		return err
	}
	defer host.Close()

	devices, reader, closeDevices, err := startEmulators(dir, log)
	if err != nil {
		return err
	}
	defer closeDevices()
	tapCard := ""
	if o.Tap {
		card := o.TapCard
		if card == "" {
			card = defaultTapCard
		}
		h, err := newCardholder(reader, card, o.TapDelay, o.Out)
		if err != nil {
			return fmt.Errorf("-card: %w", err)
		}
		tapCard = card
		// Stopped before the devices close (defers run last first).
		hctx, stopHolder := context.WithCancel(ctx)
		var hwg sync.WaitGroup
		hwg.Go(func() { h.run(hctx) })
		defer func() {
			stopHolder()
			hwg.Wait()
		}()
	}

	cfgPath := filepath.Join(dir, "posagent.toml")
	if err := writeAgentConfig(cfgPath, dir, brokerURL, ecrAddr, diagAddr, sec, devices); err != nil {
		return err
	}

	// The TMS side connects and watches the agent's presence before the agent starts, so the
	// agent's coming online is seen and an old retained record is not taken for it.
	tms, err := tmsclient.Connect(ctx, tmsclient.Options{Broker: brokerURL, Username: tmsUser, Password: sec.tmsPW, Logger: log})
	if err != nil {
		return fmt.Errorf("TMS client: %w", err)
	}
	defer tms.Close()
	prov, err := newProvisioner(ctx, tms, dir, sec, host, o.Out)
	if err != nil {
		return err
	}
	defer prov.stop()

	// As a service manager would: the launcher runs the agent from its A/B slots, so that an
	// agent update (ota.install) can be tried in the demo and rolled back by itself.
	agent := exec.Command(agentBin, "launch", "--slots", filepath.Join(dir, "data", "slots"), "--", "run", "--config", cfgPath)
	agent.Stdout, agent.Stderr = o.AgentOut, o.AgentOut
	if err := agent.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run `make build` first)", agentBin, err)
	}
	fmt.Fprintf(o.Out, "\nposdemo: broker on %s, agent %s on the simulated board (PIN pad, card reader and\n"+
		"receipt printer emulated on pseudo-terminals), acquirer host simulator on %s,\n"+
		"cash-register API on %s. Once the agent is signed in, pay from the cash register:\n"+
		"  %s\n\n%s", brokerURL, deviceID, host.Addr(), ecrURL(ecrAddr), payHint(ecrURL(ecrAddr), demoPayAmount), ecrNote)

	info := demoInfo{Dir: dir, BrokerURL: brokerURL, TMSPassword: sec.tmsPW, Key: sec.cmdKey,
		HostAddr: host.Addr(), HostHTTP: host.HTTPAddr(), ECRURL: ecrURL(ecrAddr), ECRNote: ecrNote, Tap: tapCard,
		DiagURL: "http://" + diagAddr + "/", DiagNote: diagNote, TokenFile: tokenPath, ConfigFile: cfgPath}
	pctx, cancelProv := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		signedIn, err := prov.run(pctx)
		if pctx.Err() != nil {
			return
		}
		if err != nil {
			fmt.Fprintf(o.Out, "posdemo: provisioning: %v\n", err)
		}
		// The agent binds the API at start; a port taken meanwhile shows here.
		if _, info.ECRErr = checkECR(pctx, info.ECRURL, 10*time.Second); pctx.Err() != nil {
			return
		}
		printNext(o.Out, info)
		if signedIn && o.Ready != nil {
			o.Ready(info)
		}
	})
	defer func() {
		cancelProv()
		wg.Wait()
	}()

	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	select {
	case <-ctx.Done():
		cancelProv()
		wg.Wait()
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
			<-exited
		}
		return nil
	case err := <-exited:
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("the agent exited: %v", err)
	}
}

// writeAgentConfig writes the agent's configuration. The broker URL may change between runs
// (a busy port), so the file is rewritten every time.
func writeAgentConfig(path, dir, brokerURL, ecrAddr, diagAddr string, sec *secrets, devices string) error {
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

# The demo's release key: posdemo issues the terminal's licence with it.
[[license.release_keys]]
id = %q
public_key = %q

# The cash-register API on loopback only (docs/ecr-api.md).
[ecr]
listen = %q

# The technician's diagnostics port (docs/diag.md): loopback, plain HTTP.
[diag]
listen = %q

[log]
level = "info"
%s`, deviceID, filepath.Join(dir, "data"), brokerURL, filepath.Join(dir, "device.password"),
		sec.cmdKey.ID, tmsclient.PublicKeyBase64(sec.cmdKey.Public()),
		sec.releaseKey.ID, tmsclient.PublicKeyBase64(sec.releaseKey.Public()), ecrAddr, diagAddr, devices)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// startEmulators attaches the PIN pad, card reader and printer emulators on pseudo-terminals under
// dir/dev and returns the [[devices]] entries that point the agent at them. The pad keeps its
// keys in dir so a demo terminal keeps them across runs; it has the factory transport key
// (pinpademu.DefaultTransportKey) and types 123456, the PIN of the host's demo cards, when asked.
func startEmulators(dir string, log *slog.Logger) (devices string, reader *cardemu.Emulator, closeAll func(), err error) {
	devDir := filepath.Join(dir, "dev")
	if err := os.MkdirAll(devDir, 0o700); err != nil {
		return "", nil, nil, err
	}
	pad, err := pinpademu.New(pinpademu.Options{Dir: devDir, KeyFile: filepath.Join(dir, "pinpad-keys"),
		DefaultPIN: "123456", Logger: log})
	if err != nil {
		return "", nil, nil, fmt.Errorf("PIN pad emulator: %w", err)
	}
	line, err := pty.Open(devDir, "cardreader")
	if err != nil {
		pad.Close()
		return "", nil, nil, fmt.Errorf("card reader line: %w", err)
	}
	reader = cardemu.Start(line, cardemu.Default(), cardemu.Options{Logger: log})
	pline, err := pty.Open(devDir, "printer")
	if err != nil {
		reader.Close()
		pad.Close()
		return "", nil, nil, fmt.Errorf("printer line: %w", err)
	}
	// Each printed receipt lands in dir/receipts as text and as a PNG picture.
	printer, err := printeremu.New(pline, printeremu.Config{Baud: 115200, OutDir: filepath.Join(dir, "receipts")})
	if err != nil {
		reader.Close()
		pad.Close()
		return "", nil, nil, fmt.Errorf("printer emulator: %w", err)
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
	return devices, reader, func() { printer.Close(); reader.Close(); pad.Close() }, nil
}

// printNext prints what to try in another terminal.
func printNext(w io.Writer, d demoInfo) {
	printECR(w, d)
	conn := fmt.Sprintf("--broker %s --username %s --password %s", d.BrokerURL, tmsUser, d.TMSPassword)
	send := fmt.Sprintf("--device %s --sign-key %s", deviceID, filepath.Join(d.Dir, "keys", keyID+".key"))
	fmt.Fprintf(w, `
Acquirer host simulator: ISO 8583 on %s (terminal %s, merchant %s),
  ledger  curl http://%s/ledger/%s      (also /terminals/%s, /seen, /faults)
  QR API  curl -d '{"amount": 1000, "tid": "%s"}' http://%s/qr/orders
  state   %s

Try, in another terminal:
  bin/tmsctl watch %s --device %s
  bin/tmsctl send  %s %s stats.now
  bin/tmsctl keys status %s %s
  bin/tmsctl license show --pub %s %s
  bin/tmsctl send  %s %s --body %s config.apply
      (the terminal configuration posdemo applied: succeeds unchanged; raise "version" to change it)
  bin/tmsctl send  %s %s selftest
  bin/tmsctl send  %s %s print.test   (the page lands in %s)
  bin/tmsctl send  %s %s reboot

Technician's diagnostics port (docs/diag.md): open %s in a browser and paste the
token in %s (valid 8 hours, role service), or on the command line:
  bin/posagent diag -config %s -token-file %s status
  bin/posagent diag -config %s -token-file %s selftest
%s
Ctrl-C stops the demo; its state stays in %s.

`, d.HostAddr, demoTID, demoMID,
		d.HostHTTP, demoTID, demoTID,
		demoTID, d.HostHTTP,
		filepath.Join(d.Dir, hostSnapshotFile),
		conn, deviceID,
		conn, send,
		conn, send,
		filepath.Join(d.Dir, "keys", releaseKeyID+tmsclient.PublicKeySuffix), filepath.Join(d.Dir, licenceFile),
		conn, send, filepath.Join(d.Dir, termConfigFile),
		conn, send,
		conn, send, filepath.Join(d.Dir, "receipts"),
		conn, send,
		d.DiagURL, d.TokenFile,
		d.ConfigFile, d.TokenFile,
		d.ConfigFile, d.TokenFile,
		d.DiagNote,
		d.Dir)
}

// printECR prints how to pay from the cash register.
func printECR(w io.Writer, d demoInfo) {
	if d.ECRErr != nil {
		fmt.Fprintf(w, "\nposdemo: the cash-register API does not answer on %s: %v\n  (see the agent's log above)\n", d.ECRURL, d.ECRErr)
		return
	}
	flag := ""
	if d.ECRURL != ecrURL(defaultECRAddr) {
		flag = " -url " + d.ECRURL
	}
	how, refund := "nobody taps a card (-tap=false): the customer pays by QR", "-method qr -txn ORDER"
	if d.Tap != "" {
		how = "the customer taps card " + d.Tap + " when the terminal asks (-tap=false: pay by QR instead)"
		refund = "-method card -txn RRN"
	}
	fmt.Fprintf(w, `
%sCash register: the terminal's /v2 API on %s (docs/ecr-api.md, docs/ecr-client.md).
Pay from another terminal; %s:
  %s
  go run ./cmd/posagent ecr%s status PROCESSID
  go run ./cmd/posagent ecr%s refund 500 %s      (the payment's transactionId)
  go run ./cmd/posagent ecr%s settle
`, d.ECRNote, d.ECRURL, how, payHint(d.ECRURL, demoPayAmount), flag, flag, refund, flag)
}
