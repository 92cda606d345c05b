package spool

import (
	"fmt"
	"time"

	"github.com/posagent/posagent/drivers/escpos"
)

// TestInfo is what a test page says about the terminal.
type TestInfo struct {
	Serial, Model, Board, Version string
	Time                          time.Time
}

// TestPage is the page a technician or the TMS prints to check the printer: every style, the
// three scripts of the receipts this terminal prints (Cyrillic for Russian and Kazakh,
// Chinese), a barcode and a QR code, each on its own so a missing glyph or a bad cut is
// easy to see.
func TestPage(info TestInfo, m escpos.Model) *escpos.Job {
	cols := m.Columns()
	rule := ""
	for range cols {
		rule += "-"
	}
	j := escpos.NewJob().
		Align(escpos.Center).Bold(true).Size(2, 2).Line("TEST PAGE").Size(1, 1).Bold(false).
		Line("Тест печати").
		Line("Басып шығару сынағы").
		Line("打印测试页").
		Align(escpos.Left).Line(rule).
		Line(pair("Serial", info.Serial, cols)).
		Line(pair("Model", info.Model, cols)).
		Line(pair("Board", info.Board, cols)).
		Line(pair("Agent", info.Version, cols)).
		Line(pair("Time", info.Time.Format("2006-01-02 15:04:05"), cols)).
		Line(pair("Paper", fmt.Sprintf("%d dots, %d col", m.Dots, cols), cols)).
		Line(rule).
		Line("ABCDEFGHIJKLM NOPQRSTUVWXYZ").
		Line("abcdefghijklm nopqrstuvwxyz").
		Line("0123456789 .,:;!-+*/%=()#").
		Line("АБВГДЕЁЖЗИЙКЛМНОП").
		Line("РСТУФХЦЧШЩЪЫЬЭЮЯ").
		Line("абвгдеёжзийклмноп").
		Line("рстуфхцчшщъыьэюя").
		Line("Ә Ғ Қ Ң Ө Ұ Ү Һ І").
		Line("ә ғ қ ң ө ұ ү һ і").
		Line("中文：银联卡消费成功").
		Bold(true).Line("Bold Жирный Қалың 粗体").Bold(false).
		Underline(true).Line("Underline Подчёркнутый").Underline(false).
		Size(2, 1).Line("Wide Широкий").Size(1, 2).Line("Tall Высокий").Size(1, 1).
		Line(rule).
		Align(escpos.Center).
		Barcode128(barcodeData(info), escpos.BarcodeOptions{Height: 60}).
		QR("posagent test page "+barcodeData(info), escpos.QROptions{Size: 5}).
		Line("END OF TEST").
		Feed(2).Cut()
	return j
}

// barcodeData is the serial number when it makes a short printable barcode.
func barcodeData(info TestInfo) string {
	ok := info.Serial != "" && len(info.Serial) <= 24
	for i := 0; ok && i < len(info.Serial); i++ {
		ok = info.Serial[i] > 0x20 && info.Serial[i] < 0x7F
	}
	if !ok {
		return "POSAGENT"
	}
	return info.Serial
}

// pair is "label ....... value" across the paper, the value cut if it does not fit.
func pair(label, value string, cols int) string {
	if value == "" {
		value = "-"
	}
	room := cols - len(label) - 1
	r := []rune(value)
	if room < 1 {
		return label
	}
	if len(r) > room {
		r = r[:room]
	}
	pad := cols - len(label) - len(r)
	s := label
	for range pad {
		s += " "
	}
	return s + string(r)
}
