package escpos_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/drivers/escpos"
)

// longReceipt is a long sale receipt: a logo, 300 item lines in three languages, a QR code.
func longReceipt(m escpos.Model) *escpos.Job {
	j := escpos.NewJob().Align(escpos.Center).Image(logo(384, 96)).Size(2, 2).Line("ТОО «Алма»").Size(1, 1)
	j.Align(escpos.Left)
	names := []string{"Сүт 3,2% 1 л", "Нан бидай", "绿茶 Green tea", "Қант 1 кг", "Масло сливочное"}
	for i := 0; i < 300; i++ {
		j.Line(row(m, fmt.Sprintf("%03d %s", i+1, names[i%len(names)]), fmt.Sprintf("%d.00", 100+i)))
	}
	return j.Align(escpos.Center).QR(qrURL, escpos.QROptions{Size: 4}).Feed(2).Cut()
}

// BenchmarkStreamingThroughput prints a long receipt at 115200 baud through a pty to the
// emulator, which paces the line at that rate and prints instantly, so the line is the
// bottleneck. Reported: wire B/s (everything sent, confirmations included), line-ratio
// (wire B/s over the 11 520 B/s of 115200 8N1; goal >= 0.9) and payload-ratio (the job's
// own bytes over the line rate). One confirmation per element costs 11 bytes a line; with
// checkpoints every 1 KiB it is nearly free.
func BenchmarkStreamingThroughput(b *testing.B) {
	for _, cp := range []int{0, 1024} {
		b.Run(fmt.Sprintf("checkpoint=%d", cp), func(b *testing.B) {
			opt := testOptions()
			opt.CheckpointBytes = cp
			opt.Timeout = time.Second
			r := newRig(b, printeremu.Config{KeepReceipts: 1}, opt)
			job := longReceipt(simModel)
			payload, err := job.Encode(io.Discard, simModel)
			if err != nil {
				b.Fatal(err)
			}
			ctx := ctxT(b, 10*time.Minute)
			var wire int64
			var elapsed time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before := r.p.Stats().BytesSent
				t0 := time.Now()
				if err := r.p.Print(ctx, job); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(t0)
				wire += r.p.Stats().BytesSent - before
			}
			const lineRate = 115200.0 / 10
			secs := elapsed.Seconds()
			b.ReportMetric(float64(wire)/secs, "B/s")
			b.ReportMetric(float64(wire)/secs/lineRate, "line-ratio")
			b.ReportMetric(float64(payload)*float64(b.N)/secs/lineRate, "payload-ratio")
		})
	}
}
