package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/posagent/posagent/internal/hostsim"
)

// The demo terminal as the acquirer knows it.
const (
	demoTID          = "DEMO0001"
	demoMID          = "DEMO00000000001"
	demoMerchantName = "DEMO SHOP"
	demoTPDU         = "6000030000"
	demoNII          = "003"

	hostSnapshotFile = "hostsim.json"  // the host's ledger, keys and batches
	hostAddrsFile    = "hostsim.addrs" // the ports of the last run, tried first
)

// demoHost is the acquirer host simulator running in this process: ISO 8583 for the agent,
// and one HTTP server for its QR API (/qr/…) and its control API (ledger, faults).
type demoHost struct {
	*hostsim.Server
	http    *http.Server
	isoAddr string
	ln      net.Listener
}

// hostAddrs are the addresses of a run, kept so the next run listens on the same ports when
// it can: the terminal configuration then stays as it is.
type hostAddrs struct {
	ISO8583 string `json:"iso8583"`
	HTTP    string `json:"http"`
}

// startHost starts the host simulator on 127.0.0.1, on the ports of the last run if they are
// free, else on free ones, with the demo terminal (its master key kek) and the cards of the
// emulated card reader. Its state is kept in dir/hostsim.json. qrPay is when its simulated
// customer pays a QR order (0: the simulator's default).
func startHost(dir string, kek []byte, qrPay time.Duration, log *slog.Logger) (*demoHost, error) {
	var prev hostAddrs
	if b, err := os.ReadFile(filepath.Join(dir, hostAddrsFile)); err == nil {
		_ = json.Unmarshal(b, &prev)
	}
	srv, err := hostsim.New(hostsim.Config{
		Terminals: []hostsim.Terminal{{TID: demoTID, MID: demoMID, KEK: hex.EncodeToString(kek),
			KeyLayout: hostsim.LayoutDouble, MerchantName: demoMerchantName}},
		Accounts: hostsim.DefaultAccounts(),
		Rules:    hostsim.Rules{Currency: "398"}, // the terminal's KZT
		QR:       hostsim.QRConfig{PayDelay: hostsim.Duration(qrPay)},
		Snapshot: filepath.Join(dir, hostSnapshotFile),
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("host simulator: %w", err)
	}
	isoLn, err := listenLocal(prev.ISO8583)
	if err != nil {
		return nil, fmt.Errorf("host simulator: %w", err)
	}
	httpLn, err := listenLocal(prev.HTTP)
	if err != nil {
		isoLn.Close()
		return nil, fmt.Errorf("host simulator HTTP: %w", err)
	}
	go func() { _ = srv.Serve(isoLn) }()
	mux := http.NewServeMux()
	mux.Handle("/qr/", srv.QRHandler())
	mux.Handle("/", srv.ControlHandler())
	h := &demoHost{Server: srv, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		isoAddr: isoLn.Addr().String(), ln: httpLn}
	go func() {
		if err := h.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("host simulator HTTP", "err", err)
		}
	}()
	cur, _ := json.Marshal(hostAddrs{ISO8583: h.isoAddr, HTTP: h.HTTPAddr()})
	if err := os.WriteFile(filepath.Join(dir, hostAddrsFile), append(cur, '\n'), 0o644); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// listenLocal listens on addr when it is a free 127.0.0.1 address, else on a free port.
func listenLocal(addr string) (net.Listener, error) {
	if host, _, err := net.SplitHostPort(addr); err == nil && host == "127.0.0.1" {
		if ln, err := net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// Addr is the ISO 8583 address.
func (h *demoHost) Addr() string { return h.isoAddr }

// HTTPAddr is the address of the QR and control API.
func (h *demoHost) HTTPAddr() string { return h.ln.Addr().String() }

// Close stops the HTTP API and the host.
func (h *demoHost) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.http.Shutdown(ctx)
	return h.Server.Close()
}
