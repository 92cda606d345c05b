package receipt_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// TestSlipsOnThePrinter prints the three slips through the real driver to the printer
// emulator on a pseudo-terminal, as the spooler does. With POSAGENT_WRITE_EXAMPLE=1 it writes
// docs/receipt-sale.png, docs/receipt-totals.png and docs/receipt-detail.png, the pictures
// in docs/receipts.md.
func TestSlipsOnThePrinter(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	line := serialtest.Line(t)
	emu, err := printeremu.New(line, printeremu.Config{OutDir: t.TempDir(), KZ1048Page: kzPage, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	port, err := serial.Open(serialtest.Config(line, serial.Config{Baud: 115200}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	p, err := escpos.New(port, escpos.Options{Model: model, Baud: 115200, Timeout: 2 * time.Second,
		PollInterval: 100 * time.Millisecond, StallTimeout: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	o := opts(termconfig.LanguageRussian)
	slips := []struct {
		file string
		job  *escpos.Job
		want []string
	}{
		{"receipt-sale.png", receipt.SalesSlip(purchase(), merchant(), receipt.CopyMerchant, o),
			[]string{"ЭКЗЕМПЛЯР ПРОДАВЦА", "622848******1234", "1 234,56 тг", "Подпись клиента:", "[CODE128 123456789012]"}},
		{"receipt-totals.png", receipt.TotalsSlip(totals(), merchant(), o),
			[]string{"СВЕРКА ИТОГОВ", "12 345,67", "ИТОГИ СОВПАЛИ", "ИТОГИ НЕ СОВПАЛИ"}},
		{"receipt-detail.png", receipt.DetailSlip(batch(8), merchant(), o),
			[]string{"ДЕТАЛЬНЫЙ ОТЧЁТ", "000006 ВОЗВ 622848******0005", "Операций"}},
	}
	for i, s := range slips {
		if err := p.Print(ctx, s.job); err != nil {
			t.Fatalf("%s: %v", s.file, err)
		}
		rs := emu.Receipts()
		if len(rs) != i+1 {
			t.Fatalf("%d receipts after %d slips", len(rs), i+1)
		}
		r := rs[i]
		for _, w := range s.want {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s lacks %q:\n%s", s.file, w, r.Text)
			}
		}
		if strings.ContainsRune(r.Text, '?') {
			t.Errorf("%s: a character did not make it to paper:\n%s", s.file, r.Text)
		}
		noFullPAN(t, s.file, r.Text)
		data, err := os.ReadFile(r.PNGPath)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 40<<10 {
			t.Errorf("%s is %d bytes; keep it under 40 KB", s.file, len(data))
		}
		if os.Getenv("POSAGENT_WRITE_EXAMPLE") == "1" {
			out := filepath.Join("..", "..", "docs", s.file)
			if err := os.WriteFile(out, data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", out, len(data))
		}
	}
}
