package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/ecr"
	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/qrpay"
	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/drivers/pinpad"
)

// ecrAPI is the cash-register API's state in the agent.
type ecrAPI struct {
	srv    *ecr.Server
	access *access.Store
	term   *ecrTerminal
	addr   atomic.Value // string: where it listens now
}

// openECR opens the cash-register API: its process registry and protected mode's
// registrations.
func (a *Agent) openECR() error {
	var err error
	a.ecr.access, err = access.Open(a.db, a.commit, access.Options{Logger: a.log,
		Audit: a.auditHook(audit.SourceECR, "ecr.")})
	if err != nil {
		return fmt.Errorf("ecr access: %w", err)
	}
	a.ecr.term = &ecrTerminal{a: a, co: checkout.New(checkout.Options{Engine: a.pay, Reader: a.hw.CardReader,
		Pad: a.hw.PINPad, PINSlot: a.keys.PINKeySlot, Config: a.term.Active, Logger: a.log, CardWait: 180 * time.Second})}
	var exch ecr.ExchangeLog
	if a.ecrLog != nil {
		exch = a.ecrLog
	}
	a.ecr.srv, err = ecr.New(ecr.Options{DB: a.db, Commit: a.commit, Terminal: a.ecr.term, Access: a.ecr.access,
		Exchange: exch, Logger: a.log.With("svc", "ecr"), Event: a.event, Admit: a.gate.admit})
	return err
}

// ECR is the cash-register API server (tests, the diagnostics port).
func (a *Agent) ECR() *ecr.Server { return a.ecr.srv }

// ECRAccess is protected mode's registrations (the diagnostics port approves requests).
func (a *Agent) ECRAccess() *access.Store { return a.ecr.access }

// ECRAddr is the address the cash-register API listens on now ("" when not listening).
func (a *Agent) ECRAddr() string {
	s, _ := a.ecr.addr.Load().(string)
	return s
}

// followRegisterRequests puts a cash register's registration on the PIN pad while it waits:
// the confirm key approves it, the cancel key declines (onPadKey); the screen clears when it
// ends.
func (a *Agent) followRegisterRequests(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.ecr.access.Requests():
		}
		pad := a.hw.PINPad()
		if pad == nil {
			continue
		}
		l1, l2 := "", ""
		if r, ok := a.ecr.access.Pending(); ok {
			name := r.Name
			if len([]rune(name)) > 16 {
				name = string([]rune(name)[:16])
			}
			l1, l2 = "ECR "+name+"?", "OK=allow X=deny"
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := pad.Display(dctx, l1, l2); err != nil {
			a.log.Debug("register request not shown on the pad", "err", err)
		}
		cancel()
	}
}

// onPadKey answers a pending registration with the pad's confirm or cancel key.
func (a *Agent) onPadKey(k pinpad.Key) {
	if a.ecr.access == nil {
		return
	}
	r, ok := a.ecr.access.Pending()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	switch k {
	case pinpad.KeyConfirm:
		err = a.ecr.access.Approve(ctx, r.ID, "pinpad")
	case pinpad.KeyCancel:
		err = a.ecr.access.Deny(ctx, r.ID, "pinpad")
	default:
		return
	}
	if err != nil && !errors.Is(err, access.ErrNoRequest) {
		a.log.Warn("register request not answered", "err", err)
	}
}

// runECR serves the API, and serves it again when the configuration moves it (port,
// protected mode); it also runs the API's background work.
func (a *Agent) runECR(ctx context.Context) error {
	if a.cfg.ECR.Listen == "off" {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.ecr.srv.Run(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.followRegisterRequests(ctx)
	}()
	defer wg.Wait()
	select {
	case <-a.ecr.srv.Recovered():
	case <-ctx.Done():
		return nil
	}
	updates, cancelSub := a.term.Subscribe()
	defer cancelSub()
	attempt := 0
	for {
		doc := a.term.Active()
		key := ecrListenKey(doc)
		hs, ln, err := a.listenECR(doc)
		if err != nil {
			attempt++
			d := a.cfg.Backoff().Delay(attempt, nil)
			a.log.Warn("cash-register API not listening", "err", err, "retry_in", d)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
				continue
			case <-updates:
				continue
			}
		}
		attempt = 0
		a.ecr.addr.Store(ln.Addr().String())
		a.log.Info("cash-register API listening", "addr", ln.Addr().String(), "protected", doc.ECR.ProtectedMode)
		done := make(chan error, 1)
		go func() { done <- hs.Serve(ln) }()
		moved := false
		for !moved {
			select {
			case <-ctx.Done():
				a.stopECR(hs)
				<-done
				return nil
			case err := <-done:
				a.log.Warn("cash-register API stopped", "err", err)
				moved = true
			case d := <-updates:
				if ecrListenKey(d) != key {
					a.stopECR(hs)
					<-done
					moved = true
				}
			}
		}
		a.ecr.addr.Store("")
	}
}

func (a *Agent) stopECR(hs *http.Server) {
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
}

// ecrListenKey is what, changing, makes the API listen anew.
func ecrListenKey(doc *termconfig.Document) string {
	return fmt.Sprintf("%d/%t", doc.ECR.Port, doc.ECR.ProtectedMode)
}

// listenECR binds the API: plain HTTP, or in protected mode HTTPS only (a plain request to
// it is refused by the TLS layer).
func (a *Agent) listenECR(doc *termconfig.Document) (*http.Server, net.Listener, error) {
	addr := a.cfg.ECR.Listen
	if addr == "" {
		port := doc.ECR.Port
		if port == 0 {
			port = 8080
		}
		addr = ":" + strconv.Itoa(int(port))
	}
	hs := &http.Server{Handler: a.ecr.srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		// A registration waits for the operator (two minutes at most).
		WriteTimeout: 3 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: nil}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if !doc.ECR.ProtectedMode {
		return hs, ln, nil
	}
	var cert tls.Certificate
	if a.cfg.ECR.CertFile != "" {
		cert, err = access.LoadCertificate(a.cfg.ECR.CertFile, a.cfg.ECR.KeyFile)
	} else {
		cert, err = access.LoadOrCreateCertificate(a.cfg.DataDir, certNames(a.cfg.DeviceID), time.Now())
	}
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("ecr: HTTPS certificate: %w", err)
	}
	hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return hs, tls.NewListener(ln, hs.TLSConfig), nil
}

// ecrTerminal is the terminal as the cash-register API sees it.
type ecrTerminal struct {
	a  *Agent
	co *checkout.Checkout // the customer gets 180 s to choose card or QR (seed 003)

	mu     sync.Mutex
	qr     *qrpay.Client
	qrHost termconfig.QRHost
}

func (t *ecrTerminal) Config() *termconfig.Document { return t.a.term.Active() }

func (t *ecrTerminal) DeviceInfo() ecr.DeviceInfo {
	return ecr.DeviceInfo{PosNum: "0", SerialNum: t.a.board.Identity().Serial, TerminalID: t.a.term.Active().AuthHost.TerminalID}
}

func (t *ecrTerminal) Card(ctx context.Context, s checkout.Sale, print bool) (*payment.Txn, error) {
	return t.a.ecrSale(ctx, t.co, s, print)
}

func (t *ecrTerminal) ReadCard(ctx context.Context, s checkout.Sale) (checkout.CardData, error) {
	return t.co.ReadCard(ctx, s)
}

func (t *ecrTerminal) CancelLast(ctx context.Context, id string, print bool) (*payment.Txn, error) {
	return t.a.pay.CancelLast(ctx, id)
}

func (t *ecrTerminal) Settle(ctx context.Context, print bool) (payment.SettlementTotals, error) {
	return t.a.settle(ctx, "", print)
}

func (t *ecrTerminal) Echo(ctx context.Context) error      { return t.a.pay.Echo(ctx) }
func (t *ecrTerminal) Txn(id string) (*payment.Txn, error) { return t.a.pay.Txn(id) }
func (t *ecrTerminal) Batch() ([]payment.Txn, error)       { return t.a.pay.Batch() }
func (t *ecrTerminal) Totals() (payment.SettlementTotals, error) {
	return t.a.pay.Totals()
}
func (t *ecrTerminal) Reverse(ctx context.Context) error { return t.a.pay.Reverse(ctx) }
func (t *ecrTerminal) PaymentStatus() payment.Status     { return t.a.pay.Status() }
func (t *ecrTerminal) Reprint(ctx context.Context, id string) error {
	return t.a.Reprint(ctx, id, receipt.CopyCustomer)
}

// PrintReport prints the current batch: the detail slip (full) or the totals (short).
func (t *ecrTerminal) PrintReport(ctx context.Context, short bool) error {
	sp := t.a.hw.Spooler()
	if sp == nil {
		return errors.New("no receipt printer on this terminal")
	}
	o := receipt.Options{}
	if model, ok := t.a.hw.PrinterModel(); ok {
		o.Model = model
	}
	m := merchant(t.a.term.Active())
	if short {
		st, err := t.a.pay.Totals()
		if err != nil {
			return err
		}
		st.Time, st.DomBalanced, st.ForBalanced = time.Now().Unix(), true, true
		_, err = sp.Submit("short report", receipt.TotalsSlip(st, m, o))
		return err
	}
	batch, err := t.a.pay.Batch()
	if err != nil {
		return err
	}
	_, err = sp.Submit("full report", receipt.DetailSlip(batch, m, o))
	return err
}

// QR is a client of the configuration's first QR host, made again when it changes.
func (t *ecrTerminal) QR() (ecr.QRProvider, error) {
	doc := t.a.term.Active()
	if len(doc.QRHosts) == 0 {
		return nil, errors.New("no QR host configured")
	}
	h := doc.QRHosts[0]
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.qr != nil && t.qrHost == h {
		return t.qr, nil
	}
	opts := qrpay.Options{TID: doc.AuthHost.TerminalID, Logger: t.a.log}
	if h.CACertificate != "" && !strings.Contains(h.CACertificate, "-----BEGIN") {
		pool, err := t.a.certPool(doc, h.CACertificate)
		if err != nil {
			return nil, fmt.Errorf("QR host %s: %w", h.URL, err)
		}
		opts.RootCAs = pool
	}
	c, err := qrpay.New(h, opts)
	if err != nil {
		return nil, err
	}
	t.qr, t.qrHost = c, h
	return c, nil
}

// ShowQR shows the order on the PIN pad's display (the simulated board has no screen for
// the code itself; a terminal with one renders o.QR).
func (t *ecrTerminal) ShowQR(ctx context.Context, o qrpay.Order) {
	pad := t.a.hw.PINPad()
	if pad == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	l1, l2 := "", ""
	if o.ID != "" {
		l1, l2 = "Scan QR or", "insert/tap card"
	}
	if err := pad.Display(dctx, l1, l2); err != nil {
		t.a.log.Debug("QR prompt not shown", "err", err)
	}
}

// certNames are the host names the terminal's own certificate covers besides loopback: the
// device id when it is a valid DNS label (cash registers that verify the certificate reach
// the terminal by that name through the shop's DNS or hosts file, seed 003 §4.6).
func certNames(deviceID string) []string {
	if len(deviceID) == 0 || len(deviceID) > 63 || deviceID[0] == '-' || deviceID[len(deviceID)-1] == '-' {
		return nil
	}
	for _, c := range deviceID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return nil
		}
	}
	return []string{deviceID}
}
