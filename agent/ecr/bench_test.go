package ecr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
)

// benchClients is how many cash registers poll at once: far more than a shop has (one or two
// per terminal), to see where the API stands under load.
const benchClients = 50

// BenchmarkStatus measures /v2/status over loopback with benchClients keep-alive clients:
// latency percentiles, requests per second, and what the clients' connections cost the server
// in memory. The clients poll back to back ("saturated": the most the server answers, latency
// mostly queueing) or each every 10 ms ("every-10ms": 5 000 calls/s in all, 50 times what 50
// cash registers polling once a second ask; latency close to the work itself). Compared
// against a bare net/http handler answering a constant envelope, on the same clients:
//
//	bare          net/http and the clients alone
//	api           the real Server: configuration checks, query parsing, the registry (two
//	              processes from memory, two from the bbolt store, one in progress), the envelope
//	api+exchange  the same with the exchange log the agent keeps (a JSON line per call, queued
//	              to a file)
//
// The clients are raw HTTP/1.1 over net.Conn with one 1 KiB buffer each, so nearly all the
// CPU and memory counted is the server's.
func BenchmarkStatus(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		body := []byte(`{"statusCode":0,"data":{"processId":"1795409718679","status":"wait","subStatus":"WaitUser"}}`)
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
		})
		benchModes(b, func(b *testing.B) (http.Handler, func(int) string) {
			return h, func(int) string { return "/v2/status?processId=1795409718679" }
		})
	})
	for _, exchange := range []bool{false, true} {
		name := "api"
		if exchange {
			name = "api+exchange"
		}
		b.Run(name, func(b *testing.B) {
			benchModes(b, func(b *testing.B) (http.Handler, func(int) string) {
				s, ids, xlog := benchServer(b, exchange)
				if xlog != nil {
					b.Cleanup(func() {
						// Lines the log could not queue are lost to the record, not to the API.
						if lines, dropped, _ := xlog.Stats(); dropped > 0 {
							b.Logf("exchange log: %d lines written, %d dropped", lines, dropped)
						}
					})
				}
				return s, func(i int) string { return "/v2/status?processId=" + ids[i%len(ids)] }
			})
		})
	}
}

// benchModes runs the polling in both modes on a fresh server each.
func benchModes(b *testing.B, setup func(b *testing.B) (http.Handler, func(int) string)) {
	for _, m := range []struct {
		name  string
		every time.Duration
	}{{"saturated", 0}, {"every-10ms", 10 * time.Millisecond}} {
		b.Run(m.name, func(b *testing.B) {
			h, path := setup(b)
			benchPolling(b, h, path, m.every)
		})
	}
}

// benchTerminal is the terminal as far as /v2/status reaches it: the configuration and the
// device numbers. Anything else panics (the embedded nil interface), which would show the
// benchmark strayed.
type benchTerminal struct {
	Terminal
	doc *termconfig.Document
}

func (t *benchTerminal) Config() *termconfig.Document { return t.doc }
func (t *benchTerminal) DeviceInfo() DeviceInfo {
	return DeviceInfo{PosNum: "0", SerialNum: "SIM000001", TerminalID: "DEMO0001"}
}

// benchServer is a Server on a real store in a temporary folder with five processes: one
// payment in progress, two finished a moment ago (kept in memory), two finished over a minute
// ago (served from the store). It returns their ids and, with exchange, the exchange log.
func benchServer(b *testing.B, exchange bool) (*Server, []string, *ecrlog.Log) {
	b.Helper()
	dir := b.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	commit := store.NewCommitter(db)
	b.Cleanup(func() {
		commit.Close()
		db.Close()
	})
	doc := termconfig.Default()
	doc.AuthHost.TerminalID, doc.AuthHost.MerchantName = "DEMO0001", "DEMO SHOP"
	doc.PrintProfile.StoreName, doc.PrintProfile.City, doc.PrintProfile.Address, doc.PrintProfile.TaxID =
		"DEMO SHOP", "Almaty", "Abay Ave 1", "960419351140"
	o := Options{DB: db, Commit: commit, Terminal: &benchTerminal{doc: doc}}
	var xlog *ecrlog.Log
	if exchange {
		// The agent's own bounds (agent/logupload.go): 1 MiB files, five kept.
		if xlog, err = ecrlog.Open(filepath.Join(dir, "ecr.log"), 1<<20, 5, ecrlog.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { xlog.Close() })
		o.Exchange = xlog
	}
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	running := &Process{Kind: "payment", Status: StatusWait, SubStatus: SubInitialize, Amount: 1500, Remote: "127.0.0.1:50000"}
	if err := s.reg.begin(ctx, running, true); err != nil {
		b.Fatal(err)
	}
	running.SubStatus = SubWaitUser
	s.reg.publish(running)
	ids := []string{running.ID}
	now := time.Now()
	for i := range 4 {
		p := &Process{Kind: "payment", Status: StatusWait, SubStatus: SubInitialize, Amount: 1500, Remote: "127.0.0.1:50000"}
		if err := s.reg.begin(ctx, p, false); err != nil {
			b.Fatal(err)
		}
		rrn := fmt.Sprintf("0455200000%02d", i)
		t := &payment.Txn{ID: "t" + rrn, Op: payment.OpPurchase, Amount: 150000, PAN: "622848*********2344", RRN: rrn,
			AuthCode: "647961", RespCode: "00", AppLabel: "UnionPay Debit", CardOrg: "CUP", Time: now.Unix(), State: payment.StateApproved}
		p.Status, p.SubStatus, p.Method, p.TransactionID, p.TxnID = StatusSuccess, SubCardSuccess, "card", rrn, t.ID
		p.Cheque, p.AddInfo = cardCheque(doc, t, "payment"), &AddInfo{ProductType: t.CardOrg}
		p.Collected, p.Finished = true, now.UnixMilli()
		if i >= 2 {
			p.Finished = now.Add(-2 * time.Minute).UnixMilli()
		}
		if err := s.reg.save(ctx, p); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	// The older two leave memory, as the background work does after a minute.
	if err := s.reg.purge(ctx); err != nil {
		b.Fatal(err)
	}
	s.reg.mu.Lock()
	inMemory := len(s.reg.live)
	s.reg.mu.Unlock()
	if inMemory != 3 {
		b.Fatalf("%d processes in memory, want 3 (one running, two recent)", inMemory)
	}
	return s, ids, xlog
}

// rawClient is a cash register on one keep-alive connection, as lean as HTTP/1.1 allows:
// its buffers are made before it connects, so that connecting adds little but the server's
// side of the connection.
type rawClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	body []byte
	req  []byte
}

func newRaw(addr, path string) *rawClient {
	return &rawClient{addr: addr, br: bufio.NewReaderSize(nil, 1024), body: make([]byte, 0, 2048),
		req: []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")}
}

func (c *rawClient) dial() error {
	conn, err := net.Dial("tcp", c.addr)
	if err != nil {
		return err
	}
	c.conn = conn
	c.br.Reset(conn)
	return nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

var errAnswer = errors.New("unexpected answer")

// get sends the request and reads the whole answer; it wants 200 and a success envelope.
func (c *rawClient) get() error {
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("%w: %q", errAnswer, line)
	}
	length := -1
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return fmt.Errorf("%w: Content-Length %q", errAnswer, v)
			}
		}
	}
	if length < 0 || length > cap(c.body) {
		return fmt.Errorf("%w: Content-Length %d", errAnswer, length)
	}
	c.body = c.body[:length]
	if _, err := io.ReadFull(c.br, c.body); err != nil {
		return err
	}
	if !bytes.Contains(c.body, []byte(`"statusCode":0`)) {
		return fmt.Errorf("%w: body %q", errAnswer, c.body)
	}
	return nil
}

// benchPolling serves h on loopback, connects benchClients clients, measuring the memory they
// cost, then times b.N status calls spread evenly over the clients, each polling back to back
// (every 0) or on its own schedule of one call per every, the clients' schedules staggered.
func benchPolling(b *testing.B, h http.Handler, path func(client int) string, every time.Duration) {
	r := newPollRig(b, h, path)
	b.ReportAllocs()
	b.ResetTimer()
	lat, elapsed, err := r.poll(b.N, every)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	reportLatency(b, "", lat, elapsed)
	// After the timing: ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(r.after.heap-r.before.heap)/benchClients/1024, "heap-KiB/client")
	b.ReportMetric(float64(r.after.stack-r.before.stack)/benchClients/1024, "stack-KiB/client")
	if r.before.rss > 0 && r.after.rss > 0 {
		b.ReportMetric(float64(r.after.rss-r.before.rss)/1024, "rss-KiB/50clients")
		b.ReportMetric(float64(r.after.rss)/(1<<20), "rss-MiB")
	}
}

// BenchmarkStatusInterleaved compares the three handlers of BenchmarkStatus saturated, in
// alternating rounds of 2 000 calls on the same clients, so that a machine whose load changes
// during the run (other jobs on it) weighs on all three alike: the ratios are the figures to
// trust there, more than the absolute times.
func BenchmarkStatusInterleaved(b *testing.B) {
	const perRound = 40 * benchClients
	body := []byte(`{"statusCode":0,"data":{"processId":"1795409718679","status":"wait","subStatus":"WaitUser"}}`)
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
	api, ids, _ := benchServer(b, false)
	apiX, idsX, _ := benchServer(b, true)
	rigs := []*pollRig{
		newPollRig(b, bare, func(int) string { return "/v2/status?processId=1795409718679" }),
		newPollRig(b, api, func(i int) string { return "/v2/status?processId=" + ids[i%len(ids)] }),
		newPollRig(b, apiX, func(i int) string { return "/v2/status?processId=" + idsX[i%len(idsX)] }),
	}
	names := []string{"bare", "api", "api+exchange"}
	lat := make([][]time.Duration, len(rigs))
	elapsed := make([]time.Duration, len(rigs))
	b.ResetTimer()
	for range b.N {
		for k, r := range rigs {
			l, e, err := r.poll(perRound, 0)
			if err != nil {
				b.Fatalf("%s: %v", names[k], err)
			}
			lat[k] = append(lat[k], l...)
			elapsed[k] += e
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(rigs))
	rate := make([]float64, len(rigs))
	for k := range rigs {
		p50[k], rate[k] = reportLatency(b, names[k]+"-", lat[k], elapsed[k])
	}
	for k := 1; k < len(rigs); k++ {
		b.ReportMetric(p50[k]/p50[0], names[k]+"/bare-p50")
		b.ReportMetric(rate[0]/rate[k], "bare/"+names[k]+"-req/s")
	}
}

// reportLatency reports the percentiles and the rate of a set of calls under prefix, and
// returns the median in µs and the rate.
func reportLatency(b *testing.B, prefix string, lat []time.Duration, elapsed time.Duration) (p50, rate float64) {
	if len(lat) == 0 || elapsed <= 0 {
		return 0, 0
	}
	slices.Sort(lat)
	p50 = float64(lat[len(lat)/2].Nanoseconds()) / 1e3
	rate = float64(len(lat)) / elapsed.Seconds()
	b.ReportMetric(p50, prefix+"p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, prefix+"p99-µs")
	b.ReportMetric(rate, prefix+"req/s")
	return p50, rate
}

// pollRig is a server on loopback with benchClients clients connected to it, and what
// connecting them cost.
type pollRig struct {
	clients       []*rawClient
	before, after memUse
}

// newPollRig serves h and connects the clients, client i polling path(i).
func newPollRig(b *testing.B, h http.Handler, path func(client int) string) *pollRig {
	b.Helper()
	srv := httptest.NewServer(h)
	addr := srv.Listener.Addr().String()
	r := &pollRig{clients: make([]*rawClient, benchClients)}
	for i := range r.clients {
		r.clients[i] = newRaw(addr, path(i))
	}
	b.Cleanup(func() {
		for _, c := range r.clients {
			c.close()
		}
		srv.Close()
	})
	// One call before measuring: the handler's first-use costs (pools, lazy tables) are not
	// the connections'.
	warm := newRaw(addr, path(0))
	if err := warm.dial(); err != nil {
		b.Fatal(err)
	}
	if err := warm.get(); err != nil {
		b.Fatal(err)
	}
	warm.close()
	r.before = memNow()
	for i, c := range r.clients {
		if err := c.dial(); err != nil {
			b.Fatal(err)
		}
		if err := c.get(); err != nil {
			b.Fatalf("client %d: %v", i, err)
		}
	}
	r.after = memNow()
	return r
}

// poll makes n calls spread evenly over the clients, each client polling back to back (every
// 0) or once per every on its own schedule, the schedules staggered. It returns every call's
// latency and the time all took.
func (r *pollRig) poll(n int, every time.Duration) ([]time.Duration, time.Duration, error) {
	lat := make([][]time.Duration, len(r.clients))
	for i := range lat {
		k := n / len(r.clients)
		if i < n%len(r.clients) {
			k++
		}
		lat[i] = make([]time.Duration, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(r.clients))
	start := time.Now()
	for i, c := range r.clients {
		wg.Go(func() {
			first := start.Add(every * time.Duration(i) / time.Duration(len(r.clients)))
			for j := range lat[i] {
				if every > 0 {
					time.Sleep(time.Until(first.Add(every * time.Duration(j))))
				}
				t0 := time.Now()
				if err := c.get(); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				lat[i][j] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return slices.Concat(lat...), elapsed, <-errs
}

// memUse is the process's memory at one moment.
type memUse struct {
	heap, stack, rss int64 // heap in use, goroutine stacks in use, resident set (0: unknown)
}

// memNow collects garbage first and returns freed memory to the system, so that what grows
// after it is what the next step holds on to.
func memNow() memUse {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{heap: int64(ms.HeapInuse), stack: int64(ms.StackInuse), rss: vmRSS()}
}

// vmRSS is VmRSS of /proc/self/status in bytes; 0 where there is none.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			var kb int64
			if _, err := fmt.Sscanf(string(bytes.TrimSpace(v)), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
