// Command hostsim is the acquirer host simulator of the UnionPay direct-connect POS profile
// (docs/hostsim.md): the ISO 8583 TCP server, the QR host and the control API of
// internal/hostsim, configured by a JSON file.
//
//	hostsim -config hostsim.json
//	hostsim -example > hostsim.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/posagent/posagent/internal/hostsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "hostsim:", err)
		os.Exit(1)
	}
}

// Example is the configuration -example prints and the one used without -config.
func Example() hostsim.Config {
	return hostsim.Config{
		Listen: "127.0.0.1:5000", QRListen: "127.0.0.1:5080", ControlListen: "127.0.0.1:5081",
		Terminals: []hostsim.Terminal{{TID: "10000001", MID: "898100012340001",
			KEK: "0123456789ABCDEFFEDCBA9876543210", KeyLayout: hostsim.LayoutDouble, MerchantName: "DEMO SHOP"}},
		Accounts: hostsim.DefaultAccounts(),
		Rules:    hostsim.Rules{MaxAmount: 5_000_000, BatchStart: 1, Currency: "156"},
		QR:       hostsim.QRConfig{PayDelay: hostsim.Duration(3 * time.Second), Expiry: hostsim.Duration(2 * time.Minute)},
	}
}

// run is the program; ready (tests) is called with the server once everything listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(*hostsim.Server, map[string]string)) error {
	fs := flag.NewFlagSet("hostsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "JSON configuration file (default: the -example configuration)")
	listen := fs.String("listen", "", "ISO 8583 address (overrides the configuration)")
	qr := fs.String("qr", "", "QR host HTTP address (overrides; \"off\" disables)")
	control := fs.String("control", "", "control API HTTP address (overrides; \"off\" disables)")
	snapshot := fs.String("snapshot", "", "state snapshot file (overrides)")
	example := fs.Bool("example", false, "print the example configuration and exit")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *example {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(Example())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := Example()
	if *cfgPath != "" {
		var err error
		if cfg, err = hostsim.LoadConfig(*cfgPath); err != nil {
			return err
		}
	} else {
		log.Warn("no -config: using the example configuration")
	}
	for _, o := range []struct {
		v   string
		dst *string
	}{{*listen, &cfg.Listen}, {*qr, &cfg.QRListen}, {*control, &cfg.ControlListen}, {*snapshot, &cfg.Snapshot}} {
		if o.v == "off" {
			*o.dst = ""
		} else if o.v != "" {
			*o.dst = o.v
		}
	}
	if cfg.Listen == "" {
		return errors.New("no listen address")
	}
	cfg.Logger = log
	srv, err := hostsim.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	addrs := map[string]string{"iso8583": srv.Addr()}

	// HTTP: the QR host and the control API, on one server when the addresses are equal.
	handlers := map[string]*http.ServeMux{}
	mount := func(addr, prefix string, h http.Handler) {
		if addr == "" {
			return
		}
		if handlers[addr] == nil {
			handlers[addr] = http.NewServeMux()
		}
		handlers[addr].Handle(prefix, h)
	}
	mount(cfg.QRListen, "/qr/", srv.QRHandler())
	mount(cfg.ControlListen, "/", srv.ControlHandler())
	var servers []*http.Server
	for addr, mux := range handlers {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, hs)
		go func() { _ = hs.Serve(ln) }()
		if addr == cfg.QRListen {
			addrs["qr"] = ln.Addr().String()
		}
		if addr == cfg.ControlListen {
			addrs["control"] = ln.Addr().String()
		}
	}
	log.Info("hostsim running", "iso8583", addrs["iso8583"], "qr", addrs["qr"], "control", addrs["control"])
	if ready != nil {
		ready(srv, addrs)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hs := range servers {
		_ = hs.Shutdown(sctx)
	}
	log.Info("hostsim stopped")
	return nil
}
