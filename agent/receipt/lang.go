package receipt

import (
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
)

// labels are the words of the slips in one language. Kazakh and Russian are Cyrillic; the
// driver prints the Kazakh letters through KZ-1048 or their Russian look-alikes.
type labels struct {
	merchantCopy, customerCopy, bankCopy string
	test, reprint                        string
	taxID                                string
	mid, tid, operator                   string
	card, cardOrg, expiry, entry         string
	app, aid                             string
	batch, trace, auth, ref, dateTime    string
	resp                                 string
	amount, tip, total                   string
	origTrace, origRef, origDate         string
	origAuth                             string
	approved, declined, notCompleted     string
	signature, agreement                 string
	pinVerified, noSignature             string
	printedAt                            string
	totalsTitle, detailTitle             string
	domestic, foreign                    string
	debit, credit                        string
	colType, colCount, colAmount         string
	balanced, unbalanced                 string
	currency, count                      string
	colTrace, colCard, colAuth           string
	noTxns                               string
	dateFormat                           string
	// decimal comma and thousands separator of amounts
	decimal, group string
	ops            map[payment.Op]string
	short          map[payment.Op]string // 4 columns at most, for the detail slip
	entries        map[entryKind]string
}

type entryKind uint8

const (
	entryUnknown entryKind = iota
	entryChip
	entryContactless
	entrySwipe
	entryManual
)

var english = labels{
	merchantCopy: "MERCHANT COPY", customerCopy: "CARDHOLDER COPY", bankCopy: "BANK COPY",
	test: "TEST", reprint: "REPRINT", taxID: "TAX ID",
	mid: "MERCHANT NO", tid: "TERMINAL NO", operator: "OPERATOR",
	card: "CARD NO", cardOrg: "CARD ORG", expiry: "EXP DATE", entry: "ENTRY",
	app: "APP", aid: "AID",
	batch: "BATCH NO", trace: "TRACE NO", auth: "AUTH NO", ref: "REF NO", dateTime: "DATE/TIME",
	resp: "RESP CODE", amount: "AMOUNT", tip: "TIP", total: "TOTAL",
	origTrace: "ORIG TRACE NO", origRef: "ORIG REF NO", origDate: "ORIG DATE", origAuth: "ORIG AUTH NO",
	approved: "APPROVED", declined: "DECLINED", notCompleted: "NOT COMPLETED",
	signature:   "CARDHOLDER SIGNATURE",
	agreement:   "I ACKNOWLEDGE SATISFACTORY RECEIPT OF RELATIVE GOODS/SERVICES",
	pinVerified: "PIN VERIFIED", noSignature: "NO SIGNATURE REQUIRED", printedAt: "PRINTED",
	totalsTitle: "SETTLEMENT TOTALS", detailTitle: "SETTLEMENT DETAIL",
	domestic: "DOMESTIC CARDS", foreign: "FOREIGN CARDS", debit: "DEBIT", credit: "CREDIT",
	colType: "TYPE", colCount: "COUNT", colAmount: "AMOUNT",
	balanced: "BALANCED", unbalanced: "UNBALANCED", currency: "CURRENCY", count: "TRANSACTIONS",
	colTrace: "TRACE", colCard: "CARD NO", colAuth: "AUTH", noTxns: "NO TRANSACTIONS",
	dateFormat: "2006/01/02 15:04:05", decimal: ".", group: ",",
	ops: map[payment.Op]string{
		payment.OpCashWithdrawal: "CASH WITHDRAWAL", payment.OpTopUp: "TOP-UP", payment.OpBalance: "BALANCE", payment.OpPurchase: "SALE", payment.OpVoid: "VOID",
		payment.OpRefund: "REFUND", payment.OpPreAuth: "PRE-AUTH", payment.OpPreAuthVoid: "PRE-AUTH VOID",
		payment.OpCompletion: "AUTH COMPLETE", payment.OpCompletionVoid: "COMPLETE VOID",
		payment.OpOffline: "OFFLINE SALE", payment.OpAdjustment: "ADJUST",
	},
	short: map[payment.Op]string{
		payment.OpCashWithdrawal: "CASH", payment.OpTopUp: "TOPU", payment.OpBalance: "BAL", payment.OpPurchase: "SALE", payment.OpVoid: "VOID",
		payment.OpRefund: "RFND", payment.OpPreAuth: "PAUT", payment.OpPreAuthVoid: "PAVD",
		payment.OpCompletion: "CMPL", payment.OpCompletionVoid: "CMPV",
		payment.OpOffline: "OFFL", payment.OpAdjustment: "ADJ",
	},
	entries: map[entryKind]string{entryChip: "CHIP", entryContactless: "CONTACTLESS",
		entrySwipe: "SWIPE", entryManual: "MANUAL"},
}

var russian = labels{
	merchantCopy: "ЭКЗЕМПЛЯР ПРОДАВЦА", customerCopy: "ЭКЗЕМПЛЯР КЛИЕНТА", bankCopy: "ЭКЗЕМПЛЯР БАНКА",
	test: "ТЕСТ/TEST", reprint: "ДУБЛИКАТ", taxID: "ИНН/БИН",
	mid: "Номер ТСП", tid: "Терминал", operator: "Кассир",
	card: "Карта", cardOrg: "Платёжная система", expiry: "Срок действия", entry: "Ввод",
	app: "Приложение", aid: "AID",
	batch: "Пакет", trace: "Чек", auth: "Код авторизации", ref: "RRN", dateTime: "Дата/время",
	resp: "Код ответа", amount: "Сумма", tip: "Чаевые", total: "Итого",
	origTrace: "Чек оригинала", origRef: "RRN оригинала", origDate: "Дата оригинала",
	origAuth: "Код авт. оригинала",
	approved: "ОДОБРЕНО", declined: "ОТКАЗ", notCompleted: "НЕ ЗАВЕРШЕНА",
	signature: "Подпись клиента", agreement: "Операцию подтверждаю",
	pinVerified: "Подтверждено ПИН-кодом", noSignature: "Подпись не требуется", printedAt: "Напечатано",
	totalsTitle: "СВЕРКА ИТОГОВ", detailTitle: "ДЕТАЛЬНЫЙ ОТЧЁТ",
	domestic: "Внутренние карты", foreign: "Иностранные карты", debit: "Дебет", credit: "Кредит",
	colType: "Тип", colCount: "Кол-во", colAmount: "Сумма",
	balanced: "ИТОГИ СОВПАЛИ", unbalanced: "ИТОГИ НЕ СОВПАЛИ", currency: "Валюта", count: "Операций",
	colTrace: "Чек", colCard: "Карта", colAuth: "Код", noTxns: "НЕТ ОПЕРАЦИЙ",
	dateFormat: "02.01.2006 15:04:05", decimal: ",", group: " ",
	ops: map[payment.Op]string{
		payment.OpCashWithdrawal: "ВЫДАЧА НАЛИЧНЫХ", payment.OpTopUp: "ПОПОЛНЕНИЕ", payment.OpBalance: "БАЛАНС", payment.OpPurchase: "ОПЛАТА", payment.OpVoid: "ОТМЕНА",
		payment.OpRefund: "ВОЗВРАТ", payment.OpPreAuth: "ПРЕАВТОРИЗАЦИЯ",
		payment.OpPreAuthVoid: "ОТМЕНА ПРЕАВТ.", payment.OpCompletion: "ЗАВЕРШЕНИЕ РАСЧЁТА",
		payment.OpCompletionVoid: "ОТМЕНА ЗАВЕРШЕНИЯ", payment.OpOffline: "ОФЛАЙН ОПЛАТА",
		payment.OpAdjustment: "КОРРЕКТИРОВКА",
	},
	short: map[payment.Op]string{
		payment.OpCashWithdrawal: "НАЛ", payment.OpTopUp: "ПОПЛ", payment.OpBalance: "БАЛ", payment.OpPurchase: "ОПЛ", payment.OpVoid: "ОТМ",
		payment.OpRefund: "ВОЗВ", payment.OpPreAuth: "ПРЕА", payment.OpPreAuthVoid: "ОТПА",
		payment.OpCompletion: "ЗАВР", payment.OpCompletionVoid: "ОТЗВ",
		payment.OpOffline: "ОФЛН", payment.OpAdjustment: "КОРР",
	},
	entries: map[entryKind]string{entryChip: "Чип", entryContactless: "Бесконтактно",
		entrySwipe: "Магнитная полоса", entryManual: "Ручной ввод"},
}

var kazakh = labels{
	merchantCopy: "САТУШЫ ДАНАСЫ", customerCopy: "КЛИЕНТ ДАНАСЫ", bankCopy: "БАНК ДАНАСЫ",
	test: "СЫНАҚ/TEST", reprint: "ТЕЛНҰСҚА", taxID: "БСН",
	mid: "Сатушы нөмірі", tid: "Терминал", operator: "Кассир",
	card: "Карта", cardOrg: "Төлем жүйесі", expiry: "Жарамдылық мерзімі", entry: "Енгізу",
	app: "Қосымша", aid: "AID",
	batch: "Пакет", trace: "Чек", auth: "Авторизация коды", ref: "RRN", dateTime: "Күні/уақыты",
	resp: "Жауап коды", amount: "Сома", tip: "Шайпұл", total: "Барлығы",
	origTrace: "Бастапқы чек", origRef: "Бастапқы RRN", origDate: "Бастапқы күні",
	origAuth: "Бастапқы авт. коды",
	approved: "МАҚҰЛДАНДЫ", declined: "ҚАБЫЛДАНБАДЫ", notCompleted: "АЯҚТАЛМАДЫ",
	signature: "Клиенттің қолы", agreement: "Операцияны растаймын",
	pinVerified: "ПИН-кодпен расталды", noSignature: "Қол қою қажет емес", printedAt: "Басылды",
	totalsTitle: "ҚОРЫТЫНДЫЛАРДЫ САЛЫСТЫРУ", detailTitle: "ТОЛЫҚ ЕСЕП",
	domestic: "Ішкі карталар", foreign: "Шетелдік карталар", debit: "Дебет", credit: "Кредит",
	colType: "Түрі", colCount: "Саны", colAmount: "Сома",
	balanced: "ҚОРЫТЫНДЫЛАР СӘЙКЕС", unbalanced: "ҚОРЫТЫНДЫЛАР СӘЙКЕС ЕМЕС", currency: "Валюта",
	count: "Операциялар", colTrace: "Чек", colCard: "Карта", colAuth: "Код",
	noTxns:     "ОПЕРАЦИЯЛАР ЖОҚ",
	dateFormat: "02.01.2006 15:04:05", decimal: ",", group: " ",
	ops: map[payment.Op]string{
		payment.OpCashWithdrawal: "ҚОЛМА-ҚОЛ АҚША", payment.OpTopUp: "ТОЛЫҚТЫРУ", payment.OpBalance: "БАЛАНС", payment.OpPurchase: "ТӨЛЕМ", payment.OpVoid: "БОЛДЫРМАУ",
		payment.OpRefund: "ҚАЙТАРУ", payment.OpPreAuth: "АЛДЫН АЛА АВТОРИЗАЦИЯ",
		payment.OpPreAuthVoid: "АЛД. АВТ. БОЛДЫРМАУ", payment.OpCompletion: "ЕСЕПТІ АЯҚТАУ",
		payment.OpCompletionVoid: "АЯҚТАУДЫ БОЛДЫРМАУ", payment.OpOffline: "ОФЛАЙН ТӨЛЕМ",
		payment.OpAdjustment: "ТҮЗЕТУ",
	},
	short: map[payment.Op]string{
		payment.OpCashWithdrawal: "НАҚТ", payment.OpTopUp: "ТОЛЫ", payment.OpBalance: "БАЛ", payment.OpPurchase: "ТӨЛ", payment.OpVoid: "БОЛД",
		payment.OpRefund: "ҚАЙТ", payment.OpPreAuth: "АЛДА", payment.OpPreAuthVoid: "АБОЛ",
		payment.OpCompletion: "АЯҚТ", payment.OpCompletionVoid: "АЯБ",
		payment.OpOffline: "ОФЛН", payment.OpAdjustment: "ТҮЗ",
	},
	entries: map[entryKind]string{entryChip: "Чип", entryContactless: "Жанасусыз",
		entrySwipe: "Магниттік жолақ", entryManual: "Қолмен енгізу"},
}

// chinese follows the UnionPay slip (seed 004 chapter 12): 商户存根 / 持卡人存根 / 银行存根,
// 持卡人签名, 测试/TEST, 重打印.
var chinese = labels{
	merchantCopy: "商户存根", customerCopy: "持卡人存根", bankCopy: "银行存根",
	test: "测试/TEST", reprint: "重打印/REPRINT", taxID: "税号",
	mid: "商户编号", tid: "终端编号", operator: "操作员号",
	card: "卡号", cardOrg: "卡组织", expiry: "有效期", entry: "输入方式",
	app: "应用标签", aid: "AID",
	batch: "批次号", trace: "凭证号", auth: "授权码", ref: "参考号", dateTime: "日期/时间",
	resp: "应答码", amount: "金额", tip: "小费", total: "总计",
	origTrace: "原凭证号", origRef: "原参考号", origDate: "原交易日期", origAuth: "原授权码",
	approved: "交易成功", declined: "交易失败", notCompleted: "交易未完成",
	signature: "持卡人签名", agreement: "本人确认以上交易，同意将其记入本卡账户",
	pinVerified: "密码验证", noSignature: "免签名", printedAt: "打印时间",
	totalsTitle: "结算总计单", detailTitle: "结算明细单",
	domestic: "内卡", foreign: "外卡", debit: "借记", credit: "贷记",
	colType: "类型", colCount: "笔数", colAmount: "金额",
	balanced: "对账平", unbalanced: "对账不平", currency: "币种", count: "交易笔数",
	colTrace: "凭证号", colCard: "卡号", colAuth: "授权码", noTxns: "无交易",
	dateFormat: "2006/01/02 15:04:05", decimal: ".", group: ",",
	ops: map[payment.Op]string{
		payment.OpCashWithdrawal: "取现", payment.OpTopUp: "充值", payment.OpBalance: "余额查询", payment.OpPurchase: "消费", payment.OpVoid: "消费撤销",
		payment.OpRefund: "退货", payment.OpPreAuth: "预授权", payment.OpPreAuthVoid: "预授权撤销",
		payment.OpCompletion: "预授权完成", payment.OpCompletionVoid: "预授权完成撤销",
		payment.OpOffline: "离线结算", payment.OpAdjustment: "结算调整",
	},
	short: map[payment.Op]string{
		payment.OpCashWithdrawal: "取现", payment.OpTopUp: "充值", payment.OpBalance: "余额", payment.OpPurchase: "消费", payment.OpVoid: "撤销",
		payment.OpRefund: "退货", payment.OpPreAuth: "预授", payment.OpPreAuthVoid: "预撤",
		payment.OpCompletion: "完成", payment.OpCompletionVoid: "完撤",
		payment.OpOffline: "离线", payment.OpAdjustment: "调整",
	},
	entries: map[entryKind]string{entryChip: "插卡", entryContactless: "挥卡",
		entrySwipe: "刷卡", entryManual: "手输"},
}

// labelsFor returns the table of a language; an unknown language gets English.
func labelsFor(l termconfig.Language) *labels {
	switch l {
	case termconfig.LanguageRussian:
		return &russian
	case termconfig.LanguageKazakh:
		return &kazakh
	case termconfig.LanguageChinese:
		return &chinese
	}
	return &english
}

// Languages lists the languages with a label table.
func Languages() []termconfig.Language {
	return []termconfig.Language{termconfig.LanguageRussian, termconfig.LanguageKazakh,
		termconfig.LanguageChinese, termconfig.LanguageEnglish}
}

func (l *labels) op(op payment.Op) string {
	if s, ok := l.ops[op]; ok {
		return s
	}
	return string(op)
}

func (l *labels) shortOp(op payment.Op) string {
	if s, ok := l.short[op]; ok {
		return s
	}
	s := string(op)
	if len(s) > 4 {
		s = s[:4]
	}
	return s
}

// entryOf reads the PAN entry mode of field 22 (its first two digits).
func entryOf(field22 string) entryKind {
	if len(field22) < 2 {
		return entryUnknown
	}
	switch field22[:2] {
	case "05", "95":
		return entryChip
	case "07", "91", "98":
		return entryContactless
	case "02", "90", "80":
		return entrySwipe
	case "01":
		return entryManual
	}
	return entryUnknown
}
