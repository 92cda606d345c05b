package receipt

import (
	"testing"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/drivers/escpos"
)

func TestFormatAmount(t *testing.T) {
	ru, en, zh := termconfig.LanguageRussian, termconfig.LanguageEnglish, termconfig.LanguageChinese
	for _, c := range []struct {
		minor   int64
		cur     string
		lang    termconfig.Language
		chinese bool
		paper   bool
		want    string
	}{
		{123456, "398", ru, true, true, "1 234,56 ₸"}, // the driver prints ₸ as "тг" where it must
		{123456, "398", en, true, false, "1,234.56 ₸"},
		{5, "398", ru, true, true, "0,05 ₸"},
		{0, "840", en, false, true, "$0.00"},
		{-150000, "840", en, false, true, "-$1,500.00"},
		{100000000, "643", ru, false, true, "1 000 000,00 руб."},
		{100, "643", en, false, true, "1.00 RUB"},
		{100, "643", ru, false, false, "1,00 ₽"},
		{8800, "156", zh, true, true, "￥88.00"},
		{8800, "156", zh, false, true, "CNY88.00"},
		{8800, "156", zh, false, false, "¥88.00"},
		{999, "978", en, false, true, "9.99 978"},
	} {
		if got := formatAmount(c.minor, c.cur, c.lang, labelsFor(c.lang), c.chinese, c.paper); got != c.want {
			t.Errorf("formatAmount(%d, %s, %s) = %q, want %q", c.minor, c.cur, c.lang, got, c.want)
		}
	}
}

func TestLabelTablesComplete(t *testing.T) {
	for _, l := range Languages() {
		lb := labelsFor(l)
		if len(lb.ops) != 12 || len(lb.short) != 12 || len(lb.entries) != 4 {
			t.Errorf("%s: %d ops, %d short, %d entries", l, len(lb.ops), len(lb.short), len(lb.entries))
		}
		for op, s := range lb.short {
			if w := escpos.Generic58.TextWidth(s); w > 4 {
				t.Errorf("%s: short %s %q is %d columns", l, op, s, w)
			}
		}
	}
}
