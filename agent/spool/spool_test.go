package spool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/spool"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// The spooler is tested against the real driver and the printer emulator on a
// pseudo-terminal: what matters is what ends up on the paper.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type event struct {
	kind string
	body map[string]any
}

type events struct {
	mu   sync.Mutex
	list []event
	more chan struct{}
}

func (e *events) add(_ context.Context, kind string, body map[string]any) {
	e.mu.Lock()
	e.list = append(e.list, event{kind, body})
	close(e.more)
	e.more = make(chan struct{})
	e.mu.Unlock()
}

func (e *events) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.list {
		s := ev.kind
		if st, ok := ev.body["state"]; ok {
			s += ":" + fmt.Sprint(st)
		}
		if r, ok := ev.body["reason"]; ok {
			s += ":" + fmt.Sprint(r)
		}
		out = append(out, s)
	}
	return out
}

// waitFor waits until an event of kind (with "state" or "reason" val when not "") arrived.
func (e *events) waitFor(t *testing.T, kind, val string) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.list {
			if ev.kind == kind && (val == "" || ev.body["state"] == val || ev.body["reason"] == val) {
				e.mu.Unlock()
				return ev.body
			}
		}
		more := e.more
		e.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no %s %s event; got %v", kind, val, e.kinds())
		}
	}
}

// kzPage is where the emulator keeps KZ-1048 (the number is the emulator's choice).
const kzPage = 99

var model = escpos.Model{Name: "sim-58", Dots: 384, Chinese: true,
	Pages: []escpos.CodePage{{N: kzPage, Charset: escpos.KZ1048}, {N: escpos.PageCP866, Charset: escpos.CP866}}}

type rig struct {
	emu *printeremu.Emulator
	sp  *spool.Spooler
	ev  *events
	ctx context.Context
	// stop ends Run and waits for it.
	stop func()
}

func newRig(t *testing.T, ecfg printeremu.Config, o spool.Options) *rig {
	t.Helper()
	line, port := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{Check: -1})
	if ecfg.Logger == nil {
		ecfg.Logger = quiet()
	}
	ecfg.KZ1048Page = kzPage
	emu, err := printeremu.New(line, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	p, err := escpos.New(port, escpos.Options{Model: model, Baud: 115200, Timeout: 300 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, StallTimeout: 2 * time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{more: make(chan struct{})}
	o.Printer, o.Event, o.Logger = p, ev.add, quiet()
	if o.WaitPoll == 0 {
		o.WaitPoll = 50 * time.Millisecond
	}
	if o.IdlePoll == 0 {
		o.IdlePoll = -1
	}
	sp := spool.New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); _ = sp.Run(ctx) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return &rig{emu: emu, sp: sp, ev: ev, ctx: ctx, stop: stop}
}

func numbered(n int) (*escpos.Job, string) {
	j := escpos.NewJob()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("Строка %02d", i)
		j.Line(s)
		b.WriteString(s + "\n")
	}
	return j.Cut(), b.String()
}

// waitState waits for the ticket to reach state (and reason, when not "").
func waitState(t *testing.T, tk *spool.Ticket, state spool.State, reason string) spool.Info {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := tk.Changed()
		if i := tk.Info(); i.State == state && (reason == "" || i.Reason == reason) {
			return i
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("job stays %+v, want %s %s", tk.Info(), state, reason)
		}
	}
}

func TestPaperOutMidJobWaitsReportsAndResumesOnce(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{})
	job, want := numbered(12)
	r.emu.PaperOutAfter(5)
	tk, err := r.sp.Submit("receipt 000001", job)
	if err != nil {
		t.Fatal(err)
	}
	info := waitState(t, tk, spool.Waiting, "paper-out")
	if info.Done != 5 || info.Total != 13 {
		t.Errorf("waiting at %d of %d elements, want 5 of 13", info.Done, info.Total)
	}
	stopped := r.ev.waitFor(t, spool.EventStopped, "paper-out")
	if stopped["done"] != 5 || stopped["name"] != "receipt 000001" {
		t.Errorf("print.stopped %v", stopped)
	}
	if jobs := r.sp.Jobs(); len(jobs) != 1 || jobs[0].State != spool.Waiting {
		t.Errorf("queue %+v", jobs)
	}
	r.ev.waitFor(t, spool.EventStatus, "paper-out") // the spooler watches the printer
	r.emu.LoadPaper()
	if err := tk.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	if i := tk.Info(); i.State != spool.Done || i.Done != 13 {
		t.Errorf("finished as %+v", i)
	}
	rs := r.emu.Receipts()
	if len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("%d receipts; want every line exactly once:\n%v", len(rs), rs)
	}
	got := strings.Join(r.ev.kinds(), " ")
	wantEv := "print.stopped:paper-out printer.status:paper-out printer.status:ok print.resumed"
	if got != wantEv {
		t.Errorf("events %q, want %q", got, wantEv)
	}
}

func TestCoverOpenThenPaperOutFollowsThePrinter(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{})
	r.emu.SetCoverOpen(true)
	job, want := numbered(3)
	tk, err := r.sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, tk, spool.Waiting, "cover-open")
	// The roll is changed with the cover open: the reason follows the printer.
	r.emu.SetCoverOpen(false)
	r.emu.SetPaperOut(true)
	waitState(t, tk, spool.Waiting, "paper-out")
	r.emu.LoadPaper()
	if err := tk.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	if rs := r.emu.Receipts(); len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("receipts %v", rs)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{})
	r.emu.SetPaperOut(true)
	job, _ := numbered(3)
	tk, err := r.sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, tk, spool.Waiting, "paper-out")
	tk.Cancel()
	if err := tk.Wait(r.ctx); !errors.Is(err, spool.ErrCancelled) {
		t.Fatalf("cancelled job: %v", err)
	}
	r.emu.LoadPaper()
	// The spooler goes on with the next job; the cancelled one never prints.
	next, want := numbered(2)
	tk2, err := r.sp.Submit("next", next)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk2.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	if rs := r.emu.Receipts(); len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("receipts %v", rs)
	}
}

func TestGivesUpAfterMaxWait(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{MaxWait: 300 * time.Millisecond})
	r.emu.SetPaperOut(true)
	job, _ := numbered(3)
	tk, err := r.sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Wait(r.ctx); !errors.Is(err, spool.ErrGaveUp) {
		t.Fatalf("job: %v", err)
	}
	if i := tk.Info(); i.State != spool.Failed || i.Reason != "paper-out" {
		t.Errorf("failed as %+v", i)
	}
	r.ev.waitFor(t, spool.EventFailed, "paper-out")
}

func TestSilentPrinterWaitsAndPrintsWhenItAnswers(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{})
	r.emu.SetFaults(printeremu.Faults{Silent: true})
	job, want := numbered(3)
	tk, err := r.sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, tk, spool.Waiting, "no-answer")
	r.emu.SetFaults(printeremu.Faults{})
	if err := tk.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	if rs := r.emu.Receipts(); len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("receipts %v", rs)
	}
}

// stalling answers status requests but never gets a job printed: a printer that reports
// itself fine and stalls anyway. (The emulator cannot do that: its faults hit every reply.)
type stalling struct {
	spool.Printer
	attempts int
}

func (s *stalling) Print(ctx context.Context, job *escpos.Job) error { return s.Resume(ctx, job) }
func (s *stalling) Resume(ctx context.Context, job *escpos.Job) error {
	s.attempts++
	return &escpos.JobError{Err: escpos.ErrTimeout, Total: job.Len()}
}

func TestStallingPrinterFailsAfterRetries(t *testing.T) {
	line, port := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{Check: -1})
	emu, err := printeremu.New(line, printeremu.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	p, err := escpos.New(port, escpos.Options{Model: model, Baud: 115200, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	st := &stalling{Printer: p}
	ev := &events{more: make(chan struct{})}
	sp := spool.New(spool.Options{Printer: st, Event: ev.add, Retries: 2, WaitPoll: 20 * time.Millisecond, IdlePoll: -1, Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go sp.Run(ctx)
	job, _ := numbered(2)
	tk, err := sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Wait(ctx); !errors.Is(err, spool.ErrGaveUp) || !errors.Is(err, escpos.ErrTimeout) {
		t.Fatalf("job: %v", err)
	}
	if st.attempts != 3 {
		t.Errorf("%d attempts, want 3 (the first and 2 retries)", st.attempts)
	}
	ev.waitFor(t, spool.EventFailed, "no-answer")
}

func TestUnplugMidJobWaitsForTheDevice(t *testing.T) {
	r := newRig(t, printeremu.Config{PrintSpeed: 100}, spool.Options{})
	job, want := numbered(12)
	tk, err := r.sp.Submit("receipt", job)
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(r.emu.Pending(), "Строка 02") {
		select {
		case <-tk.Done():
			t.Fatal("printed before the unplug")
		case <-time.After(2 * time.Millisecond):
		}
	}
	r.emu.Unplug()
	waitState(t, tk, spool.Waiting, "gone")
	if err := r.emu.Replug(); err != nil {
		t.Fatal(err)
	}
	if err := tk.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	// The emulated printer has its own power: it may print its buffer with the cable out. The
	// part on the paper is marked and cut, the job printed again from the start: the last
	// receipt is whole, the one before is a part of it ending with the mark.
	rs := r.emu.Receipts()
	if len(rs) == 0 || rs[len(rs)-1].Text != want {
		for _, rc := range rs {
			t.Logf("receipt:\n%s", rc.Text)
		}
		t.Fatalf("the last receipt is not the whole job:\n%s", want)
	}
	if len(rs) < 2 {
		t.Fatalf("the interrupted part was not cut off: %d receipts", len(rs))
	}
	mark := strings.Repeat(" ", 4) + spool.InterruptedLine + "\n\n\n"
	part, ok := strings.CutSuffix(rs[len(rs)-2].Text, mark)
	if !ok || !strings.HasPrefix(want, part) {
		t.Errorf("the interrupted part:\n%s", rs[len(rs)-2].Text)
	}
}

func TestIdleStatusChangesAreReported(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{IdlePoll: 40 * time.Millisecond})
	r.emu.SetPaperNearEnd(true)
	r.ev.waitFor(t, spool.EventStatus, "paper-near-end")
	r.emu.SetCoverOpen(true)
	r.ev.waitFor(t, spool.EventStatus, "cover-open")
	r.emu.SetCoverOpen(false)
	r.emu.LoadPaper()
	body := r.ev.waitFor(t, spool.EventStatus, "ok")
	if body["previous"] != "cover-open" && body["previous"] != "paper-near-end" {
		t.Errorf("back to ok from %v", body["previous"])
	}
}

func TestQueueBoundAndStop(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{QueueLen: 1})
	r.emu.SetPaperOut(true)
	first, _ := numbered(2)
	tk1, err := r.sp.Submit("first", first)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, tk1, spool.Waiting, "paper-out")
	second, _ := numbered(2)
	tk2, err := r.sp.Submit("second", second)
	if err != nil {
		t.Fatal(err)
	}
	third, _ := numbered(2)
	if _, err := r.sp.Submit("third", third); !errors.Is(err, spool.ErrQueueFull) {
		t.Fatalf("third job: %v", err)
	}
	if jobs := r.sp.Jobs(); len(jobs) != 2 || jobs[1].State != spool.Queued {
		t.Errorf("jobs %+v", jobs)
	}
	r.stop()
	for _, tk := range []*spool.Ticket{tk1, tk2} {
		if err := tk.Wait(context.Background()); !errors.Is(err, spool.ErrStopped) {
			t.Errorf("%s after stop: %v", tk.Info().Name, err)
		}
	}
	if _, err := r.sp.Submit("late", third); !errors.Is(err, spool.ErrStopped) {
		t.Errorf("submit after stop: %v", err)
	}
}

func TestBadJobRefusedAtSubmit(t *testing.T) {
	r := newRig(t, printeremu.Config{}, spool.Options{})
	if _, err := r.sp.Submit("bad", escpos.NewJob().Feed(0)); !errors.Is(err, escpos.ErrBadJob) {
		t.Fatalf("bad job: %v", err)
	}
}

// TestTestPage prints the test page on the emulator. With POSAGENT_WRITE_EXAMPLE=1 it writes
// docs/test-page.png, the committed picture of a test print.
func TestTestPage(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, printeremu.Config{OutDir: dir}, spool.Options{})
	job := spool.TestPage(spool.TestInfo{Serial: "SIM000001", Model: "sim", Board: "sim", Version: "v1.2.3",
		Time: time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)}, model)
	tk, err := r.sp.Submit("test page", job)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Wait(r.ctx); err != nil {
		t.Fatal(err)
	}
	rs := r.emu.Receipts()
	if len(rs) != 1 {
		t.Fatalf("%d receipts", len(rs))
	}
	for _, want := range []string{"TEST PAGE", "Тест печати", "打印测试页", "SIM000001", "v1.2.3",
		"2026-11-23 10:30:00", "Ә Ғ Қ Ң Ө Ұ Ү Һ І", "ә ғ қ ң ө ұ ү һ і", "АБВГДЕЁЖЗИЙКЛМНОП", "рстуфхцчшщъыьэюя", "中文：银联卡消费成功", "[CODE128 SIM000001]", "[QR posagent test page SIM000001]", "END OF TEST"} {
		if !strings.Contains(rs[0].Text, want) {
			t.Errorf("test page lacks %q:\n%s", want, rs[0].Text)
		}
	}
	if strings.ContainsRune(rs[0].Text, '?') || strings.ContainsRune(rs[0].Text, '\uFFFD') {
		t.Errorf("a character did not make it to paper:\n%s", rs[0].Text)
	}
	if os.Getenv("POSAGENT_WRITE_EXAMPLE") == "1" {
		data, err := os.ReadFile(rs[0].PNGPath)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("..", "..", "docs", "test-page.png")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(data))
	}
}
