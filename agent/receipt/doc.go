// Package receipt lays out the slips of the UnionPay profile (seed 004 chapter 12) as
// escpos jobs — the sales slip (签购单) in merchant, customer and bank copies, the settlement
// totals slip (结算总计单) and the settlement detail slip (结算明细单) — in Russian, Kazakh,
// Chinese or English; builds the electronic receipt sent on up/receipt (ERecord); and says
// which copies go out after a transaction (Plan). It prints no full card number whatever it
// is given: every PAN is masked again here. See docs/receipts.md.
package receipt
