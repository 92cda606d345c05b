package hostsim

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// QR order statuses. Pending and scanned are open (the terminal may still cancel, the
// order may still expire); the others are final.
const (
	QRPending   = "pending"
	QRScanned   = "scanned" // the customer has the order on the phone, not paid yet
	QRPaid      = "paid"
	QRCancelled = "cancelled"
	QRExpired   = "expired"
)

// qrOpen: the customer has not finished with the order.
func qrOpen(status string) bool { return status == QRPending || status == QRScanned }

// Errors of the QR host's Go API; the HTTP API answers them 404, 409 and 400.
var (
	ErrNoOrder        = errors.New("hostsim: no such QR order")
	ErrOrderNotPaid   = errors.New("hostsim: QR order not paid")
	ErrRefundTooLarge = errors.New("hostsim: refunds would exceed the order amount")
	ErrBadAmount      = errors.New("hostsim: amount must be positive")
)

// QROrder is an order of the QR host.
type QROrder struct {
	ID        string    `json:"orderId"`
	TID       string    `json:"tid"`
	Amount    int64     `json:"amount"` // minor units
	Currency  string    `json:"currency"`
	QR        string    `json:"qr"`
	Status    string    `json:"status"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	PayAt     time.Time `json:"payAt,omitzero"` // when the simulated customer acts; zero: never
	ExpiresAt time.Time `json:"expiresAt"`
	RRN       string    `json:"rrn,omitempty"` // set when paid
	// ScannedAt is when the simulated customer scanned the code (half-way to PayAt).
	ScannedAt time.Time `json:"scannedAt,omitzero"`
	// Refunded is the total refunded so far, minor units; never above Amount.
	Refunded int64 `json:"refunded,omitempty"`
}

// scanAt is when the simulated customer scans the code: half-way between the order and the
// customer's payment (zero when the customer never acts).
func (o *QROrder) scanAt() time.Time {
	if o.PayAt.IsZero() {
		return time.Time{}
	}
	return o.Created.Add(o.PayAt.Sub(o.Created) / 2)
}

// QRRefund is the answer to a refund: the order after it, and the new refund's id.
type QRRefund struct {
	QROrder
	RefundID string `json:"refundId"`
}

// customerCancels is the rule of the simulated customer: an amount whose minor units end in
// 13 (12.13, 0.13, 100.13 …) is cancelled instead of paid.
func customerCancels(amount int64) bool { return amount%100 == 13 }

// qrCreate is the body of POST /qr/orders.
type qrCreate struct {
	Amount   json.Number `json:"amount"`
	Currency string      `json:"currency"`
	TID      string      `json:"tid"`
}

// parseQRAmount: an integer is minor units (1213); a number or string with a decimal point
// is major units ("12.13", 12.13).
func parseQRAmount(n json.Number) (int64, error) {
	s := strings.TrimSpace(n.String())
	if s == "" {
		return 0, errors.New("amount missing")
	}
	if !strings.ContainsAny(s, ".eE") {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			return 0, errors.New("amount must be a positive number")
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1e10 {
		return 0, errors.New("amount must be a positive number")
	}
	return int64(math.Round(f * 100)), nil
}

// NewQROrder makes an order as POST /qr/orders does.
func (s *Server) NewQROrder(tid string, amount int64, currency string) (QROrder, error) {
	if amount <= 0 {
		return QROrder{}, errors.New("hostsim: amount must be positive")
	}
	if _, ok := s.terms[tid]; !ok {
		return QROrder{}, fmt.Errorf("hostsim: unknown terminal %q", tid)
	}
	if currency == "" {
		currency = s.cfg.Rules.Currency
	}
	var rb [8]byte
	if _, err := io.ReadFull(s.rnd, rb[:]); err != nil {
		return QROrder{}, err
	}
	now := s.now()
	o := &QROrder{ID: "QR" + now.Format("060102") + strings.ToUpper(hex.EncodeToString(rb[:])),
		TID: tid, Amount: amount, Currency: currency, Status: QRPending, Created: now, Updated: now,
		ExpiresAt: now.Add(time.Duration(s.cfg.QR.Expiry))}
	o.QR = fmt.Sprintf("hostsim://qr/pay?order=%s&amount=%d&currency=%s&tid=%s", o.ID, amount, currency, tid)
	if d := time.Duration(s.cfg.QR.PayDelay); d >= 0 {
		o.PayAt = now.Add(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.QR[o.ID] = o
	s.scheduleQR(o)
	s.saveLocked()
	return *o, nil
}

// qrTimerNames are the timers an open order may have.
var qrTimerNames = []string{"/scan", "/customer", "/expiry"}

// scheduleQR arms the scan, customer and expiry timers of an open order (s.mu held). Each
// timer acts only on an order still open, so a scan that fires after the payment (a zero
// payDelay) or a timer left from before a restart changes nothing.
func (s *Server) scheduleQR(o *QROrder) {
	id := o.ID
	arm := func(name string, at time.Time, f func(*QROrder)) {
		d := time.Until(at)
		if d < 0 {
			d = 0
		}
		s.qrTimers[id+"/"+name] = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.qrTimers, id+"/"+name)
			if cur := s.st.QR[id]; cur != nil && qrOpen(cur.Status) {
				f(cur)
				s.saveLocked()
			}
		})
	}
	// A customer who would pay only after the expiry still scans in time: the order is seen
	// scanned, then expires.
	if at := o.scanAt(); o.Status == QRPending && !at.IsZero() && at.Before(o.ExpiresAt) {
		arm("scan", at, func(o *QROrder) {
			if o.Status == QRPending {
				o.ScannedAt = s.now()
				o.Status, o.Updated = QRScanned, o.ScannedAt
				s.log.Info("QR order", "id", o.ID, "status", QRScanned, "amount", o.Amount)
			}
		})
	}
	if !o.PayAt.IsZero() && o.PayAt.Before(o.ExpiresAt) {
		arm("customer", o.PayAt, func(o *QROrder) {
			if customerCancels(o.Amount) {
				s.setQR(o, QRCancelled)
			} else {
				s.payQR(o)
			}
		})
	}
	arm("expiry", o.ExpiresAt, func(o *QROrder) { s.setQR(o, QRExpired) })
}

// resumeQR arms the timers of the open orders of a snapshot.
func (s *Server) resumeQR() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.st.QR {
		if qrOpen(o.Status) {
			s.scheduleQR(o)
		}
	}
}

// setQR gives the order a final status and stops its timers (s.mu held).
func (s *Server) setQR(o *QROrder, status string) {
	o.Status = status
	o.Updated = s.now()
	for _, n := range qrTimerNames {
		if t := s.qrTimers[o.ID+n]; t != nil {
			t.Stop()
			delete(s.qrTimers, o.ID+n)
		}
	}
	s.log.Info("QR order", "id", o.ID, "status", status, "amount", o.Amount)
}

// payQR marks the order paid and puts it in the ledger (s.mu held).
func (s *Server) payQR(o *QROrder) {
	s.st.Seq++
	now := s.now()
	o.RRN = fmt.Sprintf("%s%06d", now.Format("150405"), s.st.Seq%1_000_000)
	batch := 0
	if ts := s.st.Terminals[o.TID]; ts != nil {
		batch = ts.Batch
	}
	s.st.Entries = append(s.st.Entries, &Entry{TID: o.TID, Batch: batch, Op: OpQR, MTI: "QR", Amount: o.Amount,
		Currency: o.Currency, State: StateApproved, RespCode: RCApproved, RRN: o.RRN, Time: now, OrderID: o.ID,
		Domestic: true})
	s.setQR(o, QRPaid)
}

// QROrder is an order by id.
func (s *Server) QROrder(id string) (QROrder, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.st.QR[id]
	if !ok {
		return QROrder{}, false
	}
	return *o, true
}

// CancelQROrder cancels an open (pending or scanned) order; an order already final is
// returned as it is with ok false.
func (s *Server) CancelQROrder(id string) (o QROrder, found, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, found := s.st.QR[id]
	if !found {
		return QROrder{}, false, false
	}
	if !qrOpen(cur.Status) {
		return *cur, true, false
	}
	s.setQR(cur, QRCancelled)
	s.saveLocked()
	return *cur, true, true
}

// RefundQROrder refunds amount (minor units) of a paid order: a ledger entry (op qr.refund,
// the terminal's current batch) that takes the amount off Charged. Errors: ErrBadAmount,
// ErrNoOrder, and — with the order as it is — ErrOrderNotPaid or ErrRefundTooLarge. Each
// call is a new refund: the host does not recognise a repeated request.
func (s *Server) RefundQROrder(id string, amount int64) (QRRefund, error) {
	if amount <= 0 {
		return QRRefund{}, ErrBadAmount
	}
	var rb [8]byte
	if _, err := io.ReadFull(s.rnd, rb[:]); err != nil {
		return QRRefund{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.st.QR[id]
	if !ok {
		return QRRefund{}, ErrNoOrder
	}
	switch {
	case o.Status != QRPaid:
		return QRRefund{QROrder: *o}, fmt.Errorf("%w: %s", ErrOrderNotPaid, o.Status)
	case amount > o.Amount-o.Refunded:
		return QRRefund{QROrder: *o}, fmt.Errorf("%w: %d refunded of %d", ErrRefundTooLarge, o.Refunded, o.Amount)
	}
	now := s.now()
	rid := "RF" + now.Format("060102") + strings.ToUpper(hex.EncodeToString(rb[:]))
	s.st.Seq++
	batch := 0
	if ts := s.st.Terminals[o.TID]; ts != nil {
		batch = ts.Batch
	}
	s.st.Entries = append(s.st.Entries, &Entry{TID: o.TID, Batch: batch, Op: OpQRRefund, MTI: "QR", Amount: amount,
		Currency: o.Currency, State: StateApproved, RespCode: RCApproved,
		RRN: fmt.Sprintf("%s%06d", now.Format("150405"), s.st.Seq%1_000_000), Time: now, OrderID: o.ID,
		RefundID: rid, Domestic: true})
	o.Refunded += amount
	o.Updated = now
	s.saveLocked()
	s.log.Info("QR refund", "id", o.ID, "refund", rid, "amount", amount, "refunded", o.Refunded)
	return QRRefund{QROrder: *o, RefundID: rid}, nil
}

// decodeQRAmount reads a body {"amount": …} (more keys are allowed) with the amount rules
// of parseQRAmount.
func decodeQRAmount(r io.Reader) (int64, error) {
	var req struct {
		Amount json.Number `json:"amount"`
	}
	dec := json.NewDecoder(io.LimitReader(r, 1<<16))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return 0, fmt.Errorf("bad JSON: %w", err)
	}
	return parseQRAmount(req.Amount)
}

// QRHandler is the QR host's HTTP JSON API:
//
//	POST /qr/orders              {amount, currency, tid} → 201 {orderId, qr, status, …}
//	GET  /qr/orders/{id}         → 200 {orderId, status: pending|scanned|paid|cancelled|expired, …}
//	POST /qr/orders/{id}/cancel  → 200 the order (cancelled); 409 when already final
//	POST /qr/orders/{id}/refund  {amount} → 200 the order + refundId; 409 not paid or too much
func (s *Server) QRHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /qr/orders", func(w http.ResponseWriter, r *http.Request) {
		var req qrCreate
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
			return
		}
		amount, err := parseQRAmount(req.Amount)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		if req.TID == "" {
			httpError(w, http.StatusBadRequest, "tid missing")
			return
		}
		o, err := s.NewQROrder(req.TID, amount, req.Currency)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, o)
	})
	mux.HandleFunc("GET /qr/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		o, ok := s.QROrder(r.PathValue("id"))
		if !ok {
			httpError(w, http.StatusNotFound, "no such order")
			return
		}
		writeJSON(w, http.StatusOK, o)
	})
	mux.HandleFunc("POST /qr/orders/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		o, found, ok := s.CancelQROrder(r.PathValue("id"))
		switch {
		case !found:
			httpError(w, http.StatusNotFound, "no such order")
		case !ok:
			writeJSON(w, http.StatusConflict, o)
		default:
			writeJSON(w, http.StatusOK, o)
		}
	})
	mux.HandleFunc("POST /qr/orders/{id}/refund", func(w http.ResponseWriter, r *http.Request) {
		amount, err := decodeQRAmount(r.Body)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		res, err := s.RefundQROrder(r.PathValue("id"), amount)
		switch {
		case errors.Is(err, ErrBadAmount):
			httpError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, ErrNoOrder):
			httpError(w, http.StatusNotFound, "no such order")
		case errors.Is(err, ErrOrderNotPaid), errors.Is(err, ErrRefundTooLarge):
			writeJSON(w, http.StatusConflict, res.QROrder)
		case err != nil:
			httpError(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
