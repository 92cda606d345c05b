package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/internal/syncio"
)

func TestExampleIsAValidConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-example"}, &out, &out, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hostsim.json")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := hostsim.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Terminals) != 1 || len(cfg.Accounts) != 7 || time.Duration(cfg.QR.PayDelay) != 3*time.Second {
		t.Errorf("example %+v", cfg)
	}
}

func TestRunServesISOQRAndControl(t *testing.T) {
	cfg := Example()
	cfg.Listen, cfg.QRListen, cfg.ControlListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Snapshot = filepath.Join(t.TempDir(), "state.json")
	b, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "hostsim.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ready struct {
		srv   *hostsim.Server
		addrs map[string]string
	}
	ch := make(chan ready, 1)
	done := make(chan error, 1)
	var logs syncio.Buffer
	go func() {
		done <- run(ctx, []string{"-config", path}, &logs, &logs, func(s *hostsim.Server, a map[string]string) { ch <- ready{s, a} })
	}()
	var r ready
	select {
	case r = <-ch:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}

	// Control API: a fault on the echo, then the echo through the real client.
	resp, err := http.Post("http://"+r.addrs["control"]+"/faults", "application/json",
		strings.NewReader(`{"kind":"noanswer","mti":"0820","count":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("control: %d", resp.StatusCode)
	}
	h, _ := iso8583.NewHeader("6000030000", false)
	echo, err := iso8583.Pack(h, &iso8583.Msg{MTI: "0820", STAN: 1, TID: "10000001", MID: "898100012340001",
		F60: iso8583.F60{Type: "00", Batch: "000001", NetCode: "301"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli := iso8583.NewClient(iso8583.ClientOptions{Addrs: []string{r.addrs["iso8583"]}, Timeout: 300 * time.Millisecond})
	if _, err := cli.Exchange(ctx, echo); err == nil {
		t.Error("the fault did not apply")
	}
	out, err := cli.Exchange(ctx, echo)
	if err != nil {
		t.Fatal(err)
	}
	if _, m, _, err := iso8583.Unpack(out); err != nil || m.RespCode != "00" {
		t.Fatalf("echo: %v %+v", err, m)
	}

	// QR host.
	resp, err = http.Post("http://"+r.addrs["qr"]+"/qr/orders", "application/json",
		strings.NewReader(`{"amount":100,"currency":"156","tid":"10000001"}`))
	if err != nil {
		t.Fatal(err)
	}
	var o hostsim.QROrder
	_ = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || o.Status != "pending" {
		t.Fatalf("QR: %d %+v", resp.StatusCode, o)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Snapshot); err != nil {
		t.Errorf("no snapshot: %v", err)
	}
}
