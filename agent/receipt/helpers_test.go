package receipt_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/board/sim/printeremu"
	"github.com/posagent/posagent/drivers/escpos"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// kzPage is where the emulator keeps KZ-1048 (the emulator's choice, as in agent/spool).
const kzPage = 99

// model is the simulated 58 mm printer: KZ-1048, CP866 and the Chinese font.
var model = escpos.Model{Name: "sim-58", Dots: 384, Chinese: true,
	Pages: []escpos.CodePage{{N: kzPage, Charset: escpos.KZ1048}, {N: escpos.PageCP866, Charset: escpos.CP866}}}

var emuConfig = printeremu.Config{KZ1048Page: kzPage}

var clock = time.Date(2026, 11, 23, 10, 45, 0, 0, time.UTC)

func opts(lang termconfig.Language) receipt.Options {
	return receipt.Options{Language: lang, Model: model, Location: time.UTC,
		Now: func() time.Time { return clock }}
}

func merchant() receipt.Merchant {
	return receipt.Merchant{
		Name: "ТОО «Алма» 阿尔玛", MID: "898310048990001", TID: "10000001",
		Address: []string{"Алматы, пр. Абая 10"}, TaxID: "123456789012",
		Header: []string{"Добро пожаловать"}, Footer: []string{"Спасибо! Рахмет! 谢谢!"},
		Language: termconfig.LanguageRussian,
	}
}

func purchase() *payment.Txn {
	return &payment.Txn{
		ID: "t-000123", Op: payment.OpPurchase, State: payment.StateApproved, STAN: 123, Batch: 7,
		Amount: 123456, Currency: "398", PAN: "622848******1234", Expiry: "2812", Entry: "051",
		CardOrg: "CUP", Domestic: true, RRN: "123456789012", AuthCode: "A1B2C3", RespCode: "00",
		Time: time.Date(2026, 11, 23, 10, 30, 5, 0, time.UTC).Unix(), HostDate: "1123",
		Operator: "01", AppLabel: "UnionPay Debit", AID: "A000000333010101",
	}
}

// render encodes a job for the simulated model and prints it on the emulator offline: the
// receipts as the emulator renders them to text.
func render(t testing.TB, j *escpos.Job) []*printeremu.Receipt {
	t.Helper()
	var b bytes.Buffer
	if _, err := j.Encode(&b, model); err != nil {
		t.Fatal(err)
	}
	rs, _, err := printeremu.Render(b.Bytes(), emuConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d receipts, want 1", len(rs))
	}
	return rs
}

func text(t testing.TB, j *escpos.Job) string {
	t.Helper()
	return render(t, j)[0].Text
}

// golden compares got with testdata/name.txt; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file; got:\n%s\nwant:\n%s", name, got, want)
	}
	if strings.ContainsRune(got, '?') || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("%s: a character did not make it to paper:\n%s", name, got)
	}
}

// renderWith renders a stream on an emulator of cfg; the single receipt's text.
func renderWith(data []byte, cfg printeremu.Config) (string, error) {
	rs, _, err := printeremu.Render(data, cfg)
	if err != nil {
		return "", err
	}
	if len(rs) != 1 {
		return "", fmt.Errorf("%d receipts", len(rs))
	}
	return rs[0].Text, nil
}
