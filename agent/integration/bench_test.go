package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/internal/syncio"
)

// The benchmarks here run the real, stripped posagent binary as a separate process, as it
// runs on a terminal.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func agentBinary(b testing.TB) string {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "posagent-bench")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "posagent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", binPath, "github.com/posagent/posagent/cmd/posagent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	return binPath
}

// startBinary runs the agent binary until the test ends; its output is shown if the test
// fails.
func startBinary(tb testing.TB, cfgPath string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(agentBinary(tb), "run", "--config", cfgPath)
	var out syncio.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("agent output:\n%s", out.String())
		}
	})
	return cmd
}

func (e *env) onlineCount() int {
	n := 0
	for _, env := range e.stream(tmsproto.StreamOnline) {
		var o tmsproto.Online
		if tmsproto.Unmarshal(env.Body, &o) == nil && o.Online {
			n++
		}
	}
	return n
}

// BenchmarkStartToConnected: from exec of a fresh agent (empty data folder) to its retained
// online record reaching the TMS.
func BenchmarkStartToConnected(b *testing.B) {
	e := newEnvTB(b, "BENCH-START")
	agentBinary(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		e.dir = b.TempDir()
		cfg := e.configFile("")
		before := e.onlineCount()
		start := time.Now()
		cmd := startBinary(b, cfg)
		waitFor(b, 20*time.Second, "online", func() bool { return e.onlineCount() > before })
		total += time.Since(start)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/connect")
}

// BenchmarkIdleAgentRSS: resident memory of a connected, idle agent after a minute
// (POSAGENT_BENCH_IDLE overrides the wait): on the bare sim board, and with a PIN pad, a card
// reader and a printer attached (emulators on pseudo-terminals) that have each done some
// work (a self-test, a test page) before the idle minute. The difference is what the drivers
// add.
func BenchmarkIdleAgentRSS(b *testing.B) {
	idle := time.Minute
	if v := os.Getenv("POSAGENT_BENCH_IDLE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			idle = d
		}
	}
	e := newEnvTB(b, "BENCH-RSS")
	// run starts the agent with extra configuration, lets work run once it is online, waits
	// idle and returns its resident set in MiB.
	run := func(extra string, work func()) float64 {
		e.dir = b.TempDir()
		before := e.onlineCount()
		cmd := startBinary(b, e.configFile(extra))
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		waitFor(b, 20*time.Second, "online", func() bool { return e.onlineCount() > before })
		if work != nil {
			work()
		}
		time.Sleep(idle)
		kb, err := vmRSS(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		return float64(kb) / 1024
	}
	devices, closeDevices := benchDevices(b)
	defer closeDevices()
	var bare, withDevices float64
	for i := 0; i < b.N; i++ {
		bare = run("", nil)
		withDevices = run(devices, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for _, kind := range []string{"selftest", "print.test"} {
				sent, err := e.tms.Send(ctx, e.device, e.key, tmsproto.Command{Kind: kind})
				if err != nil {
					b.Fatal(err)
				}
				if a := e.finalAck(sent.Match(), 0); a.State != tmsproto.StateSucceeded {
					b.Fatalf("%s: %+v", kind, a)
				}
			}
		})
	}
	b.ReportMetric(bare, "MiB-rss")
	b.ReportMetric(withDevices, "MiB-rss-devices")
	b.ReportMetric(withDevices-bare, "MiB-drivers")
}

// benchDevices starts the PIN pad, card reader and printer emulators on pseudo-terminals and
// returns the [[devices]] configuration naming them.
func benchDevices(b *testing.B) (string, func()) {
	dir := b.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pad, err := pinpademu.New(pinpademu.Options{Dir: dir, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	rline, err := pty.Open(dir, "cardreader")
	if err != nil {
		b.Fatal(err)
	}
	reader := cardemu.Start(rline, cardemu.Default(), cardemu.Options{Logger: quiet})
	pline, err := pty.Open(dir, "printer")
	if err != nil {
		b.Fatal(err)
	}
	printer, err := printeremu.New(pline, printeremu.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	var cfg strings.Builder
	for _, d := range []struct{ name, path string }{{"pinpad", pad.Path()}, {"cardreader", rline.Path()}, {"printer", pline.Path()}} {
		fmt.Fprintf(&cfg, "\n[[devices]]\nname = %q\nkind = %q\n[devices.port]\npath = %q\nbaud = 115200\n", d.name, d.name, d.path)
	}
	return cfg.String(), func() { printer.Close(); reader.Close(); pad.Close(); pline.Close(); rline.Close() }
}

func vmRSS(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// countingProxy relays TCP between the agent and the broker, counting bytes and reads (a read
// approximates a TCP segment on an idle link, where each packet travels alone).
type countingProxy struct {
	ln                 net.Listener
	target             string
	upBytes, downBytes atomic.Int64
	upSegs, downSegs   atomic.Int64
}

func newCountingProxy(b *testing.B, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{ln: ln, target: target}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(s, c, &p.upBytes, &p.upSegs)
			go p.pipe(c, s, &p.downBytes, &p.downSegs)
		}
	}()
	return p
}

func (p *countingProxy) pipe(dst, src net.Conn, n, segs *atomic.Int64) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			segs.Add(1)
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *countingProxy) snapshot() (bytes, segs int64) {
	return p.upBytes.Load() + p.downBytes.Load(), p.upSegs.Load() + p.downSegs.Load()
}

// BenchmarkIdleMobileData measures, through a byte-counting proxy, what an idle agent sends
// and receives: one keepalive exchange and one stats message with its PUBACK, in MQTT bytes and
// packets. It then projects a month at the default intervals (keepalive 300 s, stats 1 h),
// adding TCP/IPv4 headers (52 bytes a segment with timestamps, plus one bare ACK per exchange)
// and, for the TLS figure, 29 bytes of TLS 1.2 AES-GCM record overhead per packet.
func BenchmarkIdleMobileData(b *testing.B) {
	e := newEnvTB(b, "BENCH-DATA")
	u, err := url.Parse(e.broker.URL())
	if err != nil {
		b.Fatal(err)
	}
	proxy := newCountingProxy(b, u.Host)
	proxyURL := "tcp://" + proxy.ln.Addr().String()
	// measure runs an agent for window and returns the bytes and segments that crossed the
	// proxy, and how many stats records reached the TMS meanwhile.
	measure := func(mode string, window time.Duration) (bytes, segs int64, stats int) {
		e.dir = b.TempDir()
		e.resetUplinks()
		cmd := startBinary(b, e.configFileWithBroker(proxyURL, mode))
		waitFor(b, 20*time.Second, "online", func() bool { return e.onlineCount() > 0 })
		time.Sleep(2 * time.Second) // start-up traffic (online, first stats, event) settles
		b0, s0 := proxy.snapshot()
		n0 := len(e.stream(tmsproto.StreamStats))
		time.Sleep(window)
		b1, s1 := proxy.snapshot()
		n1 := len(e.stream(tmsproto.StreamStats))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return b1 - b0, s1 - s0, n1 - n0
	}
	var pingSegs, statsBytes, statsSegs float64
	for i := 0; i < b.N; i++ {
		// Keepalive only (1 s keepalive, no stats due): PINGREQ and PINGRESP are 2 bytes each,
		// so the byte count gives the number of exchanges.
		kb, ks, _ := measure("", 10*time.Second)
		exchanges := float64(kb) / 4
		if exchanges == 0 {
			b.Fatal("no keepalive traffic seen")
		}
		pingSegs = float64(ks) / exchanges
		// Stats every second, keepalive far away: each stats record is a PUBLISH and a PUBACK.
		sb, ss, n := measure("stats", 10*time.Second)
		if n == 0 {
			b.Fatal("no stats records seen")
		}
		statsBytes, statsSegs = float64(sb)/float64(n), float64(ss)/float64(n)
	}
	pingBytes := 4.0
	const month = 30 * 24 * 3600.0
	const tcpHdr, tlsRec = 52.0, 29.0
	pings, stats := month/300, month/3600
	plain := pings*(pingBytes+pingSegs*tcpHdr+tcpHdr) + stats*(statsBytes+statsSegs*tcpHdr+tcpHdr)
	tls := plain + pings*pingSegs*tlsRec + stats*statsSegs*tlsRec
	b.ReportMetric(pingSegs, "segs/keepalive")
	b.ReportMetric(statsBytes, "B/stats")
	b.ReportMetric(statsSegs, "segs/stats")
	b.ReportMetric(plain/1e6, "MB/month-tcp")
	b.ReportMetric(tls/1e6, "MB/month-tls")
}
