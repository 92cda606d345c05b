package escpos_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// simKZPage is where the simulated printer keeps KZ-1048. The number is arbitrary: which
// ESC t number (if any) holds KZ-1048 on a real printer is to be confirmed per model.
const simKZPage = 99

var simModel = escpos.Model{
	Name:    "sim-58",
	Dots:    384,
	Pages:   []escpos.CodePage{{N: simKZPage, Charset: escpos.KZ1048}, {N: escpos.PageCP866, Charset: escpos.CP866}},
	Chinese: true,
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type rig struct {
	t    testing.TB
	line *pty.Line
	emu  *printeremu.Emulator
	port serial.Port
	p    *escpos.Printer
	opt  escpos.Options
}

func testOptions() escpos.Options {
	return escpos.Options{
		Model:        simModel,
		Baud:         115200,
		Timeout:      400 * time.Millisecond,
		PollInterval: 100 * time.Millisecond,
		StallTimeout: 3 * time.Second,
		Logger:       quiet(),
	}
}

// newRig starts an emulated printer on a pty and the driver on the device end, opened with
// serial.Open as the agent opens hardware (no flow control in the port: the driver does it).
func newRig(t testing.TB, ecfg printeremu.Config, opt escpos.Options) *rig {
	t.Helper()
	line := serialtest.Line(t)
	if ecfg.Logger == nil {
		ecfg.Logger = quiet()
	}
	if ecfg.KZ1048Page == 0 {
		ecfg.KZ1048Page = simKZPage
	}
	emu, err := printeremu.New(line, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	port, err := serial.Open(serialtest.Config(line, serial.Config{Baud: max(opt.Baud, 9600)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	p, err := escpos.New(port, opt)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, line: line, emu: emu, port: port, p: p, opt: opt}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logo is a small test graphic: a ring with a grey gradient inside, to show dithering.
func logo(w, h int) image.Image {
	img := image.NewGray(image.Rect(0, 0, w, h))
	cx, cy, r := float64(h)/2, float64(h)/2, float64(h)/2-2
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			dx, dy := float64(x)-cx, float64(y)-cy
			d := dx*dx + dy*dy
			v := uint8(255)
			switch {
			case d <= (r-6)*(r-6):
				v = uint8(255 * x / h)
			case d <= r*r:
				v = 0
			case x > h+8 && (y/6)%2 == 0:
				v = uint8(255 * (x - h) / (w - h))
			}
			img.SetGray(x, y, color.Gray{v})
		}
	}
	return img
}

// row lays out a two-column receipt line in m's columns.
func row(m escpos.Model, left, right string) string {
	pad := m.Columns() - m.TextWidth(left) - m.TextWidth(right)
	return left + strings.Repeat(" ", max(pad, 1)) + right
}

// centred is how the emulator's text shows a centred line: the spaces a 12-dot column grid
// puts before it.
func centred(m escpos.Model, s string, mag int) string {
	x := (m.Dots - m.TextWidth(s)*12*mag) / 2
	return strings.Repeat(" ", (x+6)/12) + s
}

const qrURL = "https://ofd.example.kz/t?i=100042&f=7700112233&s=2620.00"

// demoReceipt is a sale receipt in Russian, Kazakh and Chinese with a logo, a QR code and a
// barcode; want is what the emulator's text rendering must show.
func demoReceipt(m escpos.Model) (job *escpos.Job, want string) {
	j := escpos.NewJob().Align(escpos.Center).Image(logo(160, 56))
	j.Bold(true).Size(2, 2).Line("ТОО «Алма»").Size(1, 1).Bold(false)
	j.Line("Кассовый чек / Сату чегі").Line("收据 № 000042").Feed(1)
	j.Align(escpos.Left)
	items := [][2]string{
		{"Сүт 3,2% 1 л", "2 x 450 = 900.00"},
		{"Нан бидай", "1 x 220 = 220.00"},
		{"绿茶 Green tea", "1500.00"},
	}
	lines := []string{
		"[image 160x56]",
		centred(m, "ТОО «Алма»", 2),
		centred(m, "Кассовый чек / Сату чегі", 1),
		centred(m, "收据 № 000042", 1),
		"",
	}
	for _, it := range items {
		j.Line(row(m, it[0], it[1]))
		lines = append(lines, row(m, it[0], it[1]))
	}
	total := row(m, "ИТОГО / БАРЛЫҒЫ", "2620.00")
	j.Bold(true).Line(total).Bold(false)
	j.Line("Карта **** 1234  Қабылданды").Feed(1)
	j.Align(escpos.Center).QR(qrURL, escpos.QROptions{Size: 4, Level: escpos.QRLevelM})
	j.Barcode128("000042-2620", escpos.BarcodeOptions{Height: 48})
	j.Line("Рахмет! 谢谢! Спасибо!").Feed(2).Cut()
	lines = append(lines, total, "Карта **** 1234  Қабылданды", "",
		"[QR "+qrURL+"]", "[CODE128 000042-2620]", centred(m, "Рахмет! 谢谢! Спасибо!", 1), "", "")
	return j, strings.Join(lines, "\n") + "\n"
}

func TestReceiptRussianKazakhChinese(t *testing.T) {
	r := newRig(t, printeremu.Config{}, testOptions())
	job, want := demoReceipt(simModel)
	if err := r.p.Print(ctxT(t, 20*time.Second), job); err != nil {
		t.Fatal(err)
	}
	if !job.Complete() || job.Done() != job.Len() {
		t.Errorf("job done %d of %d", job.Done(), job.Len())
	}
	rs := r.emu.Receipts()
	if len(rs) != 1 {
		t.Fatalf("%d receipts", len(rs))
	}
	if rs[0].Text != want {
		t.Errorf("receipt text\n%s\nwant\n%s", rs[0].Text, want)
	}
	img := rs[0].Image
	inked := 0
	for y := 0; y < img.Rect.Dy(); y++ {
		for x := 0; x < img.Rect.Dx(); x++ {
			if img.ColorIndexAt(x, y) == 1 {
				inked++
				break
			}
		}
	}
	// Logo, title, nine text lines, QR code, barcode: well over 300 rows with ink.
	if img.Rect.Dx() != 384 || inked < 300 {
		t.Errorf("image %v with %d inked rows", img.Rect, inked)
	}
	if st, at := r.p.LastStatus(); !st.Printable() || at.IsZero() {
		t.Errorf("status after the job: %+v", st)
	}
	if s := r.emu.Stats(); s.Overflow != 0 || s.Unknown != 0 {
		t.Errorf("emulator %+v", s)
	}
}

func TestKazakhFallbackWithoutKZ1048(t *testing.T) {
	opt := testOptions()
	opt.Model = escpos.Generic58
	r := newRig(t, printeremu.Config{ChineseAtInit: true}, opt)
	job := escpos.NewJob().Line("Қазақстан Әлі Ұлы Үй Һ Ғ Ң Ө").Line("中文 и русский").Cut()
	if err := r.p.Print(ctxT(t, 10*time.Second), job); err != nil {
		t.Fatal(err)
	}
	// The printer started in Chinese mode: the driver must have left it for the Cyrillic.
	if got, want := r.emu.Receipts()[0].Text, "Казакстан Алі Улы Уй Х Г Н О\n中文 и русский\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func numberedJob(n int) (*escpos.Job, string) {
	j := escpos.NewJob()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("Строка %02d", i)
		j.Line(s)
		b.WriteString(s + "\n")
	}
	return j.Cut(), b.String()
}

func TestPaperOutMidJobThenResume(t *testing.T) {
	r := newRig(t, printeremu.Config{}, testOptions())
	job, want := numberedJob(12)
	r.emu.PaperOutAfter(5)
	err := r.p.Print(ctxT(t, 10*time.Second), job)
	var je *escpos.JobError
	if !errors.As(err, &je) || !errors.Is(err, escpos.ErrPaperOut) {
		t.Fatalf("print: %v", err)
	}
	if je.Done != 5 || je.Total != 13 || job.Done() != 5 || !je.Status.PaperOut {
		t.Errorf("stopped at %d of %d (job %d), status %+v", je.Done, je.Total, job.Done(), je.Status)
	}
	if got := r.emu.Pending(); got != "Строка 01\nСтрока 02\nСтрока 03\nСтрока 04\nСтрока 05\n" {
		t.Errorf("printed before the paper ran out: %q", got)
	}
	if s := r.emu.Stats(); s.Clears != 1 {
		t.Errorf("the printer's buffers were not cleared: %+v", s)
	}

	// Still out of paper: Resume refuses before sending anything.
	if err := r.p.Resume(ctxT(t, 5*time.Second), job); !errors.Is(err, escpos.ErrPaperOut) {
		t.Fatalf("resume without paper: %v", err)
	}
	r.emu.LoadPaper()
	if err := r.p.Resume(ctxT(t, 10*time.Second), job); err != nil {
		t.Fatalf("resume: %v", err)
	}
	rs := r.emu.Receipts()
	if len(rs) != 1 || rs[0].Text != want {
		t.Fatalf("receipts %d, text\n%s\nwant\n%s", len(rs), rs[0].Text, want)
	}
	if !job.Complete() {
		t.Error("job not complete")
	}
}

func TestCoverOpenBeforeAndDuringJob(t *testing.T) {
	r := newRig(t, printeremu.Config{PrintSpeed: 60}, testOptions())
	r.emu.SetCoverOpen(true)
	job, want := numberedJob(20)
	err := r.p.Print(ctxT(t, 5*time.Second), job)
	var je *escpos.JobError
	if !errors.As(err, &je) || !errors.Is(err, escpos.ErrCoverOpen) || je.Done != 0 || !je.Status.CoverOpen {
		t.Fatalf("print with the cover open: %v", err)
	}
	if got := r.emu.Pending(); got != "" {
		t.Fatalf("printed %q with the cover open", got)
	}
	r.emu.SetCoverOpen(false)

	// Open the cover once a few lines are out.
	go func() {
		for !strings.Contains(r.emu.Pending(), "Строка 03") {
			time.Sleep(5 * time.Millisecond)
		}
		r.emu.SetCoverOpen(true)
	}()
	err = r.p.Print(ctxT(t, 10*time.Second), job)
	if !errors.As(err, &je) || !errors.Is(err, escpos.ErrCoverOpen) || je.Done < 3 || je.Done >= 20 {
		t.Fatalf("cover opened mid-job: %v", err)
	}
	r.emu.SetCoverOpen(false)
	done := job.Done()
	if err := r.p.Resume(ctxT(t, 10*time.Second), job); err != nil {
		t.Fatal(err)
	}
	// The cover opens at any moment: the line being printed then was printed but not yet
	// confirmed, so it may come out twice; nothing else may.
	next := fmt.Sprintf("Строка %02d\n", done+1)
	twice := strings.Replace(want, next, next+next, 1)
	if rs := r.emu.Receipts(); len(rs) != 1 || rs[0].Text != want && rs[0].Text != twice {
		t.Fatalf("after resume (done %d): %q", done, rs[0].Text)
	}
}

func TestFlowControlWithSlowPrinter(t *testing.T) {
	// A small buffer and a print engine slower than the line: the printer must hold the
	// driver off with XOFF, and nothing may be lost.
	r := newRig(t, printeremu.Config{PrintSpeed: 500, BufferSize: 1024, XOffFree: 256, XOnFree: 512}, testOptions())
	job, want := numberedJob(150)
	if err := r.p.Print(ctxT(t, 20*time.Second), job); err != nil {
		t.Fatal(err)
	}
	if got := r.emu.Receipts()[0].Text; got != want {
		t.Errorf("text differs: %d bytes, want %d", len(got), len(want))
	}
	if s := r.emu.Stats(); s.Overflow != 0 || s.XOFF == 0 {
		t.Errorf("emulator %+v: want XOFF sent and no overflow", s)
	}
	if s := r.p.Stats(); s.XOFF == 0 || s.Jobs != 1 {
		t.Errorf("driver %+v", s)
	}
}

func TestFaultSwitches(t *testing.T) {
	r := newRig(t, printeremu.Config{Seed: 7}, testOptions())
	ctx := ctxT(t, 60*time.Second)
	limit := 3 * r.opt.Timeout
	for _, tt := range []struct {
		name   string
		faults printeremu.Faults
		want   error
	}{
		{"silence", printeremu.Faults{Silent: true}, escpos.ErrTimeout},
		{"slow beyond the timeout", printeremu.Faults{Delay: 2 * r.opt.Timeout}, escpos.ErrTimeout},
		{"truncated replies", printeremu.Faults{Truncate: true}, escpos.ErrTimeout},
		{"corrupted replies", printeremu.Faults{Corrupt: true}, escpos.ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r.emu.SetFaults(tt.faults)
			t0 := time.Now()
			_, err := r.p.Status(ctx)
			if !errors.Is(err, tt.want) {
				t.Errorf("status: %v, want %v", err, tt.want)
			}
			if d := time.Since(t0); d > limit {
				t.Errorf("took %v", d)
			}
			job, _ := numberedJob(2)
			err = r.p.Print(ctx, job)
			var je *escpos.JobError
			if !errors.As(err, &je) || !errors.Is(err, tt.want) {
				t.Errorf("print: %v, want %v", err, tt.want)
			}
			r.emu.SetFaults(printeremu.Faults{})
			time.Sleep(tt.faults.Delay) // let delayed replies drain
			if st, err := r.p.Status(ctx); err != nil || !st.Printable() {
				t.Fatalf("no recovery: %+v %v", st, err)
			}
		})
	}
	t.Run("slow but within the timeout", func(t *testing.T) {
		r.emu.SetFaults(printeremu.Faults{Delay: r.opt.Timeout / 4})
		defer r.emu.SetFaults(printeremu.Faults{})
		if _, err := r.p.Status(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("noise", func(t *testing.T) {
		r.emu.SetFaults(printeremu.Faults{Noise: true})
		defer r.emu.SetFaults(printeremu.Faults{})
		before := r.p.Stats().Garbage
		job, want := numberedJob(30)
		n := len(r.emu.Receipts())
		if err := r.p.Print(ctx, job); err != nil {
			t.Fatal(err)
		}
		rs := r.emu.Receipts()
		if len(rs) != n+1 || rs[n].Text != want {
			t.Fatalf("receipt under noise: %q", rs[len(rs)-1].Text)
		}
		if r.p.Stats().Garbage == before {
			t.Error("no garbage counted: was there any noise?")
		}
	})
	t.Run("silence mid-job", func(t *testing.T) {
		r.emu.SetFaults(printeremu.Faults{})
		defer r.emu.SetFaults(printeremu.Faults{})
		job, _ := numberedJob(40)
		n := len(r.emu.Receipts())
		go func() {
			for !strings.Contains(r.emu.Pending(), "Строка 02") {
				time.Sleep(2 * time.Millisecond)
			}
			r.emu.SetFaults(printeremu.Faults{Silent: true})
		}()
		err := r.p.Print(ctx, job)
		if !errors.Is(err, escpos.ErrTimeout) {
			t.Fatalf("print: %v", err)
		}
		r.emu.SetFaults(printeremu.Faults{})
		if err := r.p.Resume(ctx, job); err != nil {
			t.Fatal(err)
		}
		// Confirmations lost to the silence make Resume print again what the printer had
		// already printed (perhaps the whole job); the last receipt ends the job.
		if rs := r.emu.Receipts(); len(rs) < n+1 || !strings.HasSuffix(rs[len(rs)-1].Text, "Строка 40\n") {
			t.Errorf("receipts after recovery: %d", len(rs))
		}
	})
}

func TestUnplugAndReplug(t *testing.T) {
	line, port := serialtest.Reopen(t, serial.Config{}, serial.ReopenOptions{Check: -1})
	emu, err := printeremu.New(line, printeremu.Config{Logger: quiet(), KZ1048Page: simKZPage, PrintSpeed: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	p, err := escpos.New(port, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	if _, err := p.Status(ctx); err != nil {
		t.Fatal(err)
	}

	// Unplugged in the middle of a job.
	job, _ := numberedJob(12)
	go func() {
		for !strings.Contains(emu.Pending(), "Строка 02") {
			time.Sleep(2 * time.Millisecond)
		}
		emu.Unplug()
	}()
	err = p.Print(ctx, job)
	var je *escpos.JobError
	if !errors.As(err, &je) || !serial.IsGone(err) {
		t.Fatalf("print while unplugged: %v", err)
	}
	if _, err := p.Status(ctx); !serial.IsGone(err) {
		t.Fatalf("status while unplugged: %v", err)
	}

	if err := emu.Replug(); err != nil {
		t.Fatal(err)
	}
	if err := port.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Status(ctx); err != nil || !st.Printable() {
		t.Fatalf("status after replug: %+v %v", st, err)
	}
	if err := p.Resume(ctx, job); err != nil {
		t.Fatal(err)
	}
	if !job.Complete() {
		t.Error("job not complete after replug")
	}
}

func TestCheckpointsTradeExactnessForLineTime(t *testing.T) {
	opt := testOptions()
	opt.CheckpointBytes = 60 // a confirmation every few lines
	r := newRig(t, printeremu.Config{}, opt)
	job, _ := numberedJob(12)
	r.emu.PaperOutAfter(5)
	err := r.p.Print(ctxT(t, 10*time.Second), job)
	var je *escpos.JobError
	if !errors.As(err, &je) || !errors.Is(err, escpos.ErrPaperOut) || je.Done > 5 {
		t.Fatalf("print: %v", err)
	}
	r.emu.LoadPaper()
	if err := r.p.Resume(ctxT(t, 10*time.Second), job); err != nil {
		t.Fatal(err)
	}
	// Lines between the last confirmation and the paper end are printed again: at least
	// once each, in order.
	text := r.emu.Receipts()[0].Text
	last := -1
	for i := 1; i <= 12; i++ {
		k := strings.LastIndex(text, fmt.Sprintf("Строка %02d", i))
		if k < last {
			t.Fatalf("line %d missing or out of order in %q", i, text)
		}
		last = k
	}
}

// TestExampleReceipt renders the demo receipt to a PNG. With POSAGENT_WRITE_EXAMPLE=1 it
// writes docs/receipt-example.png, the picture committed for people to look at.
func TestExampleReceipt(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, printeremu.Config{OutDir: dir}, testOptions())
	job, _ := demoReceipt(simModel)
	if err := r.p.Print(ctxT(t, 20*time.Second), job); err != nil {
		t.Fatal(err)
	}
	rs := r.emu.Receipts()
	data, err := os.ReadFile(rs[0].PNGPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 32<<10 {
		t.Errorf("the example PNG is %d bytes; keep it small", len(data))
	}
	if os.Getenv("POSAGENT_WRITE_EXAMPLE") == "1" {
		out := filepath.Join("..", "..", "docs", "receipt-example.png")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(data))
	}
}
