package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"github.com/posagent/posagent/agent/ecr/ecrclient"
	"github.com/posagent/posagent/internal/syncio"
)

const ecrUsageText = `usage: posagent ecr [flags] <verb> [arguments]

Talks to a terminal's cash-register API as a cash register does (docs/ecr-client.md).

operations, followed to their end (Ctrl-C asks the terminal to cancel, twice stops following):
  pay AMOUNT [-owncheque]                      purchase
  refund AMOUNT -method card|qr -txn ID [-owncheque]
  void TXN [-amount N] [-owncheque]            cancel a payment of the business day
  settle [-owncheque]                          close the business day
  preauth AMOUNT [-owncheque]                  pre-authorization
  complete TXN AMOUNT [-owncheque]             pre-authorization completion
  balance                                      balance inquiry
  withdraw AMOUNT [-owncheque]                 cash withdrawal
  topup AMOUNT [-owncheque]                    account top-up
  readcard                                     read card data
  emergency-cancel PROCESSID [-owncheque]      reverse the last operation
  follow PROCESSID                             follow a process already started

single calls:
  status PROCESSID | actualize PROCESSID | cancel PROCESSID
  report [-short] | copy [TXN] | echo | info
  register NAME [-save FILE]                   ask for access (protected mode)
  revoke NAME [-refresh TOKEN | -from FILE]    new token pair; -from FILE updates FILE
  call PATH [key=value ...]                    any call; prints the envelope

Exit status: 0 success, 1 fail, unknown or an error answer, 2 usage.

flags:
`

// Exit codes of the ecr verbs.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type ecrCLI struct {
	c      *ecrclient.Client
	json   bool
	poll   time.Duration
	stdout io.Writer
	stderr io.Writer
	// ownToken: -token or -token-file chose the access token (not the environment's default).
	ownToken bool
}

type ecrVerb func(e *ecrCLI, ctx context.Context, args []string) int

var ecrVerbs = map[string]ecrVerb{
	"pay":              runPay,
	"refund":           runRefund,
	"void":             runVoid,
	"settle":           amountless("settle", ecrclient.PathSettlement, true),
	"preauth":          withAmount("preauth", ecrclient.PathPreauth),
	"complete":         runComplete,
	"balance":          amountless("balance", ecrclient.PathBalance, false),
	"withdraw":         withAmount("withdraw", ecrclient.PathCashWithdrawal),
	"topup":            withAmount("topup", ecrclient.PathTopUp),
	"readcard":         amountless("readcard", ecrclient.PathReadCard, false),
	"emergency-cancel": runEmergencyCancel,
	"follow":           runFollow,
	"status":           statusVerb("status", ecrclient.PathStatus),
	"actualize":        statusVerb("actualize", ecrclient.PathActualize),
	"cancel":           runCancel,
	"report":           runReport,
	"copy":             runCopy,
	"echo":             runEcho,
	"info":             runInfo,
	"register":         runRegister,
	"revoke":           runRevoke,
	"call":             runCall,
}

// usageError is a mistake on the command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func ecrCommand(args []string, stdout, stderr io.Writer) int {
	// The retry log (from Follow) and the interrupt messages share stderr.
	stderr = syncio.NewWriter(stderr)
	fs := flag.NewFlagSet("posagent ecr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ecrUsageText)
		fs.PrintDefaults()
	}
	base := fs.String("url", envOr("POSAGENT_ECR_URL", "http://127.0.0.1:8080"), "the terminal's API `URL` (env POSAGENT_ECR_URL)")
	// The token's default is not shown in -h: it is a secret.
	token := fs.String("token", "", "access `token` of protected mode (env POSAGENT_ECR_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the access token from `FILE` (the token, or the JSON that register -save writes)")
	insecure := fs.Bool("insecure", false, "do not verify the terminal's (self-signed) certificate")
	asJSON := fs.Bool("json", false, "print the envelopes as they come, one JSON line each")
	timeout := fs.Duration("timeout", ecrclient.DefaultTimeout, "bound on each request")
	poll := fs.Duration("poll", ecrclient.DefaultPollInterval, "status polling interval")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	name, verbArgs := fs.Arg(0), fs.Args()[1:]
	v, ok := ecrVerbs[name]
	if !ok {
		fmt.Fprintf(stderr, "posagent ecr: unknown verb %q (posagent ecr -h lists them)\n", name)
		return exitUsage
	}

	tok := *token
	switch {
	case tok != "" && *tokenFile != "":
		fmt.Fprintln(stderr, "posagent ecr: -token and -token-file exclude each other")
		return exitUsage
	case *tokenFile != "":
		t, err := readTokenFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "posagent ecr:", err)
			return exitUsage
		}
		tok = t.AccessToken
	case tok == "":
		tok = os.Getenv("POSAGENT_ECR_TOKEN")
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := &ecrCLI{
		c: ecrclient.New(*base, ecrclient.Options{
			Token: tok, Insecure: *insecure, Timeout: *timeout, Logger: log}),
		json: *asJSON, poll: *poll, stdout: stdout, stderr: stderr,
		ownToken: *token != "" || *tokenFile != "",
	}
	return v(e, context.Background(), verbArgs)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// tokenFile is what register -save writes and revoke -from reads and rewrites.
type tokenFile struct {
	Name string `json:"name,omitempty"`
	ecrclient.Tokens
}

// readTokenFile accepts the JSON of register -save or a file holding the bare token.
func readTokenFile(path string) (tokenFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return tokenFile{}, fmt.Errorf("token file: %w", err)
	}
	b = bytes.TrimSpace(b)
	var t tokenFile
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &t); err != nil {
			return tokenFile{}, fmt.Errorf("token file %s: %w", path, err)
		}
	} else {
		t.AccessToken = string(b)
	}
	if t.AccessToken == "" && t.RefreshToken == "" {
		return tokenFile{}, fmt.Errorf("token file %s holds no token", path)
	}
	return t, nil
}

func writeTokenFile(path string, t tokenFile) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	// Written whole or not at all, readable by its owner only: the tokens grant payments.
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600))
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	defer pf.Cleanup()
	if _, err := pf.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	return nil
}

// parseVerb reads a verb's flags wherever they stand among its arguments ("pay 100 -owncheque"
// as well as "pay -owncheque 100") and checks the number of the other arguments.
func parseVerb(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usagef("%s: wrong number of arguments", fs.Name())
	}
	return pos, nil
}

func parseAmount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, usagef("amount %q: want a whole number of currency units above 0", s)
	}
	return n, nil
}

func boolString(b bool) string { return strconv.FormatBool(b) }

// fail reports err and returns its exit code. An error answer's envelope goes to stdout too
// with -json, so that a script sees every answer in one format.
func (e *ecrCLI) fail(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "posagent ecr: %v\n", err)
		return exitUsage
	}
	var ae *ecrclient.APIError
	if e.json && errors.As(err, &ae) && ae.Code != 0 {
		e.printEnvelope(ecrclient.Envelope{StatusCode: ae.Code, Data: ae.Data, ErrorText: ae.Text})
	}
	msg := err.Error()
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		msg += " (the terminal's certificate is self-signed: -insecure skips its check)"
	}
	fmt.Fprintln(e.stderr, "posagent ecr:", msg)
	return exitFail
}

func (e *ecrCLI) printEnvelope(env ecrclient.Envelope) {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(env)
}

// interrupts catches Ctrl-C for following an operation. Only the verbs that follow catch it:
// elsewhere Ctrl-C ends the command as usual.
func interrupts() (<-chan os.Signal, func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	return sig, func() { signal.Stop(sig) }
}

// process starts an operation at path and follows it to its end. Ctrl-C is caught from before
// the start: one that comes while the operation starts becomes a cancel once it is followed.
func (e *ecrCLI) process(ctx context.Context, path string, q url.Values) int {
	sig, stopSig := interrupts()
	defer stopSig()
	env, err := e.c.Call(ctx, path, q)
	if err != nil {
		return e.fail(err)
	}
	started, err := ecrclient.DecodeStarted(env.Data)
	if err != nil {
		return e.fail(err)
	}
	if e.json {
		e.printEnvelope(env)
	} else {
		fmt.Fprintf(e.stdout, "process %s\n", started.ProcessID)
	}
	return e.follow(ctx, started.ProcessID, sig)
}

// follow polls process id to its end, one line per change. The first interrupt asks the
// terminal to cancel and following goes on (the terminal says how the process ended: a card
// already approved is reversed, not just dropped); the second stops following.
func (e *ecrCLI) follow(ctx context.Context, id string, sig <-chan os.Signal) int {
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		asked := false
		for {
			select {
			case <-done:
				return
			case <-sig:
			}
			if asked {
				stop()
				return
			}
			asked = true
			fmt.Fprintf(e.stderr, "posagent ecr: asking the terminal to cancel process %s (Ctrl-C again stops following)\n", id)
			if err := e.c.Cancel(fctx, id); err != nil {
				fmt.Fprintln(e.stderr, "posagent ecr: cancel:", err)
			}
		}
	}()
	final, err := e.c.Follow(fctx, id, e.poll, e.printChange)
	close(done)
	wg.Wait()
	if err != nil {
		if ctx.Err() == nil && fctx.Err() != nil {
			fmt.Fprintf(e.stderr, "posagent ecr: stopped following; process %s goes on: posagent ecr follow %s\n", id, id)
			return exitFail
		}
		return e.fail(err)
	}
	return e.outcome(final)
}

// outcome prints a final (or, for status, any) state's details and gives the exit code.
func (e *ecrCLI) outcome(s ecrclient.Status) int {
	if !e.json {
		printReceipt(e.stdout, s)
	}
	switch s.Status {
	case ecrclient.StatusFail:
		fmt.Fprintf(e.stderr, "posagent ecr: process %s failed: %s\n", s.ProcessID, orDash(s.Message))
		return exitFail
	case ecrclient.StatusUnknown:
		fmt.Fprintf(e.stderr, "posagent ecr: process %s: outcome unknown (%s); ask again later: posagent ecr actualize %s\n",
			s.ProcessID, orDash(s.Message), s.ProcessID)
		return exitFail
	}
	return exitOK
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printChange is one line per state: time, status, subStatus, and the essentials once final.
func (e *ecrCLI) printChange(s ecrclient.Status) {
	if e.json {
		e.printEnvelope(ecrclient.Envelope{Data: s.Raw})
		return
	}
	line := fmt.Sprintf("%s %-9s %-23s %s", time.Now().Format("15:04:05"), s.Status, s.SubStatus, summary(s))
	fmt.Fprintln(e.stdout, strings.TrimRight(line, " "))
}

func summary(s ecrclient.Status) string {
	var parts []string
	add := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			parts = append(parts, k+"="+quoteIfNeeded(v))
		}
	}
	if ci := s.ChequeInfo; ci != nil {
		add("rrn", ci.RRN)
		add("auth", ci.AuthorizationCode)
		add("card", maskPAN(ci.CardMask))
		add("order", ci.OrderNumber)
		add("amount", ci.Amount)
	} else {
		add("txn", s.TransactionID)
	}
	add("message", s.Message)
	return strings.Join(parts, " ")
}

func quoteIfNeeded(v string) string {
	if strings.ContainsAny(v, " \t\"=") {
		return strconv.Quote(v)
	}
	return v
}

// maskPAN masks a card number that arrives unmasked; the terminal masks it already, but a
// full card number must never reach a screen or a shell history.
func maskPAN(v string) string {
	digits := 0
	for _, r := range v {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	if digits < 13 || len(v) != digits {
		return v
	}
	return v[:6] + strings.Repeat("*", len(v)-10) + v[len(v)-4:]
}

// printReceipt prints what the cash register would print from chequeInfo, then addInfo and any
// object of the integrated-till operations (totals, card, balance).
func printReceipt(w io.Writer, s ecrclient.Status) {
	if ci := s.ChequeInfo; ci != nil {
		fmt.Fprintln(w, "receipt:")
		row := func(label, v string) {
			if v = strings.TrimSpace(v); v != "" {
				fmt.Fprintf(w, "  %-15s %s\n", label, v)
			}
		}
		row("store", ci.StoreName)
		row("city", ci.City)
		row("address", ci.Address)
		row("merchant BIN", ci.BIN)
		row("terminal", ci.TerminalID)
		row("result", ci.Status)
		row("type", ci.Type)
		row("method", ci.Method)
		row("amount", ci.Amount)
		row("date", ci.Date)
		row("card", maskPAN(ci.CardMask))
		row("card product", ci.ICC)
		if ci.PinEntered != nil {
			row("PIN entered", yesNo(*ci.PinEntered))
		}
		row("RRN", ci.RRN)
		row("authorization", ci.AuthorizationCode)
		row("response code", ci.HostResponseCode)
		row("order", ci.OrderNumber)
	}
	if s.TransactionID != "" && s.Final() {
		fmt.Fprintf(w, "transaction %s\n", s.TransactionID)
	}
	if a := s.AddInfo; a != nil {
		fmt.Fprintf(w, "product %s, loan term %d, offer %v", orDash(a.ProductType), a.LoanTerm, a.IsOffer)
		if a.LoanOfferName != "" {
			fmt.Fprintf(w, " (%s)", a.LoanOfferName)
		}
		fmt.Fprintln(w)
	}
	extra := s.Extra()
	names := make([]string, 0, len(extra))
	for k := range extra {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		renderField(w, k, extra[k], 0)
	}
}

// renderJSON prints a JSON object for people: one "key: value" line per scalar, nested
// objects and arrays indented, in the order the terminal sent them.
func renderJSON(w io.Writer, raw json.RawMessage) {
	v, err := orderedJSON(raw)
	if err != nil {
		fmt.Fprintf(w, "%s\n", raw)
		return
	}
	if obj, ok := v.(jsonObject); ok {
		for _, f := range obj {
			renderValue(w, f.key, f.val, 0)
		}
		return
	}
	renderValue(w, "", v, 0)
}

func renderField(w io.Writer, key string, raw json.RawMessage, depth int) {
	v, err := orderedJSON(raw)
	if err != nil {
		fmt.Fprintf(w, "%s%s: %s\n", strings.Repeat("  ", depth), key, raw)
		return
	}
	renderValue(w, key, v, depth)
}

type jsonField struct {
	key string
	val any
}

type jsonObject []jsonField

func renderValue(w io.Writer, key string, v any, depth int) {
	ind := strings.Repeat("  ", depth)
	label := ind + key + ":"
	if key == "" {
		label = ind + "-"
	}
	switch t := v.(type) {
	case jsonObject:
		if len(t) == 0 {
			fmt.Fprintf(w, "%s {}\n", label)
			return
		}
		fmt.Fprintln(w, label)
		for _, f := range t {
			renderValue(w, f.key, f.val, depth+1)
		}
	case []any:
		if len(t) == 0 {
			fmt.Fprintf(w, "%s []\n", label)
			return
		}
		fmt.Fprintln(w, label)
		for _, x := range t {
			renderValue(w, "", x, depth+1)
		}
	case nil:
		fmt.Fprintf(w, "%s null\n", label)
	default:
		fmt.Fprintf(w, "%s %v\n", label, t)
	}
}

// orderedJSON decodes JSON keeping the order of object keys, which a map would lose.
func orderedJSON(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeOrdered(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

func decodeOrdered(dec *json.Decoder, depth int) (any, error) {
	// The body is bounded (1 MiB) but nesting is not; a screen needs no more than this.
	if depth > 32 {
		return nil, errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		var obj jsonObject
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ := k.(string)
			v, err := decodeOrdered(dec, depth+1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, jsonField{key, v})
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		if obj == nil {
			obj = jsonObject{}
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeOrdered(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// direct makes a call whose answer is its data, and prints it.
func (e *ecrCLI) direct(ctx context.Context, path string, q url.Values, human func(json.RawMessage)) int {
	env, err := e.c.Call(ctx, path, q)
	if err != nil {
		return e.fail(err)
	}
	if e.json {
		e.printEnvelope(env)
		return exitOK
	}
	human(env.Data)
	return exitOK
}

func (e *ecrCLI) renderOr(ok string) func(json.RawMessage) {
	return func(d json.RawMessage) {
		if len(d) == 0 || string(d) == "{}" {
			fmt.Fprintln(e.stdout, ok)
			return
		}
		renderJSON(e.stdout, d)
	}
}

// --- verbs ---

func runPay(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("pay", flag.ContinueOnError)
	own := fs.Bool("owncheque", false, "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	amt, err := parseAmount(pos[0])
	if err != nil {
		return e.fail(err)
	}
	return e.process(ctx, ecrclient.PathPayment, url.Values{"amount": {strconv.FormatInt(amt, 10)}, "owncheque": {boolString(*own)}})
}

func runRefund(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("refund", flag.ContinueOnError)
	own := fs.Bool("owncheque", false, "")
	method := fs.String("method", "", "")
	txn := fs.String("txn", "", "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	amt, err := parseAmount(pos[0])
	if err != nil {
		return e.fail(err)
	}
	if *method != ecrclient.MethodCard && *method != ecrclient.MethodQR {
		return e.fail(usagef("refund: -method card or -method qr, the payment's method"))
	}
	if *txn == "" {
		return e.fail(usagef("refund: -txn, the payment's transactionId (rrn or orderNumber), is required"))
	}
	return e.process(ctx, ecrclient.PathRefund, url.Values{"amount": {strconv.FormatInt(amt, 10)}, "method": {*method},
		"transactionId": {*txn}, "owncheque": {boolString(*own)}})
}

func runVoid(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("void", flag.ContinueOnError)
	own := fs.Bool("owncheque", false, "")
	amount := fs.String("amount", "", "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	q := url.Values{"transactionId": {pos[0]}, "owncheque": {boolString(*own)}}
	if *amount != "" {
		amt, err := parseAmount(*amount)
		if err != nil {
			return e.fail(err)
		}
		q.Set("amount", strconv.FormatInt(amt, 10))
	}
	return e.process(ctx, ecrclient.PathVoid, q)
}

// amountless is a process verb without arguments; withOwn adds -owncheque.
func amountless(name, path string, withOwn bool) ecrVerb {
	return func(e *ecrCLI, ctx context.Context, args []string) int {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		var own *bool
		if withOwn {
			own = fs.Bool("owncheque", false, "")
		}
		if _, err := parseVerb(fs, args, 0, 0); err != nil {
			return e.fail(err)
		}
		var q url.Values
		if own != nil {
			q = url.Values{"owncheque": {boolString(*own)}}
		}
		return e.process(ctx, path, q)
	}
}

// withAmount is a process verb of one amount and -owncheque.
func withAmount(name, path string) ecrVerb {
	return func(e *ecrCLI, ctx context.Context, args []string) int {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		own := fs.Bool("owncheque", false, "")
		pos, err := parseVerb(fs, args, 1, 1)
		if err != nil {
			return e.fail(err)
		}
		amt, err := parseAmount(pos[0])
		if err != nil {
			return e.fail(err)
		}
		return e.process(ctx, path, url.Values{"amount": {strconv.FormatInt(amt, 10)}, "owncheque": {boolString(*own)}})
	}
}

func runComplete(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("complete", flag.ContinueOnError)
	own := fs.Bool("owncheque", false, "")
	pos, err := parseVerb(fs, args, 2, 2)
	if err != nil {
		return e.fail(err)
	}
	amt, err := parseAmount(pos[1])
	if err != nil {
		return e.fail(err)
	}
	return e.process(ctx, ecrclient.PathPreauthComplete, url.Values{"transactionId": {pos[0]},
		"amount": {strconv.FormatInt(amt, 10)}, "owncheque": {boolString(*own)}})
}

func runEmergencyCancel(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("emergency-cancel", flag.ContinueOnError)
	own := fs.Bool("owncheque", false, "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	return e.process(ctx, ecrclient.PathEmergencyCancel, url.Values{"processId": {pos[0]}, "owncheque": {boolString(*own)}})
}

func runFollow(e *ecrCLI, ctx context.Context, args []string) int {
	pos, err := parseVerb(flag.NewFlagSet("follow", flag.ContinueOnError), args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	sig, stopSig := interrupts()
	defer stopSig()
	return e.follow(ctx, pos[0], sig)
}

// statusVerb asks once (status or actualize) and prints the state like follow does.
func statusVerb(name, path string) ecrVerb {
	return func(e *ecrCLI, ctx context.Context, args []string) int {
		pos, err := parseVerb(flag.NewFlagSet(name, flag.ContinueOnError), args, 1, 1)
		if err != nil {
			return e.fail(err)
		}
		env, err := e.c.Call(ctx, path, url.Values{"processId": {pos[0]}})
		if err != nil {
			return e.fail(err)
		}
		s, err := ecrclient.DecodeStatus(env.Data)
		if err != nil {
			return e.fail(err)
		}
		if e.json {
			e.printEnvelope(env)
		} else {
			e.printChange(s)
		}
		return e.outcome(s)
	}
}

func runCancel(e *ecrCLI, ctx context.Context, args []string) int {
	pos, err := parseVerb(flag.NewFlagSet("cancel", flag.ContinueOnError), args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	return e.direct(ctx, ecrclient.PathCancel, url.Values{"processId": {pos[0]}}, func(d json.RawMessage) {
		fmt.Fprintf(e.stdout, "cancel requested; the terminal ends the process (posagent ecr follow %s)\n", pos[0])
		// The terminal answers with the process's state at the time of asking.
		if s, err := ecrclient.DecodeStatus(d); err == nil {
			e.printChange(s)
		}
	})
}

func runReport(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	short := fs.Bool("short", false, "")
	if _, err := parseVerb(fs, args, 0, 0); err != nil {
		return e.fail(err)
	}
	return e.direct(ctx, ecrclient.PathReport, url.Values{"short": {boolString(*short)}}, e.renderOr("empty report"))
}

func runCopy(e *ecrCLI, ctx context.Context, args []string) int {
	pos, err := parseVerb(flag.NewFlagSet("copy", flag.ContinueOnError), args, 0, 1)
	if err != nil {
		return e.fail(err)
	}
	var q url.Values
	if len(pos) == 1 {
		q = url.Values{"transactionId": {pos[0]}}
	}
	return e.direct(ctx, ecrclient.PathReceiptCopy, q, e.renderOr("no receipt"))
}

func runEcho(e *ecrCLI, ctx context.Context, args []string) int {
	if _, err := parseVerb(flag.NewFlagSet("echo", flag.ContinueOnError), args, 0, 0); err != nil {
		return e.fail(err)
	}
	return e.direct(ctx, ecrclient.PathEcho, nil, e.renderOr("echo ok"))
}

func runInfo(e *ecrCLI, ctx context.Context, args []string) int {
	if _, err := parseVerb(flag.NewFlagSet("info", flag.ContinueOnError), args, 0, 0); err != nil {
		return e.fail(err)
	}
	return e.direct(ctx, ecrclient.PathDeviceInfo, nil, func(d json.RawMessage) {
		var di ecrclient.DeviceInfo
		if json.Unmarshal(d, &di) != nil {
			renderJSON(e.stdout, d)
			return
		}
		fmt.Fprintf(e.stdout, "posNum      %s\nserialNum   %s\nterminalId  %s\n", di.PosNum, di.SerialNum, di.TerminalID)
	})
}

func (e *ecrCLI) printTokens(t ecrclient.Tokens) {
	if e.json {
		data, _ := json.Marshal(t)
		e.printEnvelope(ecrclient.Envelope{Data: data})
		return
	}
	fmt.Fprintf(e.stdout, "accessToken     %s\nrefreshToken    %s\nexpirationDate  %s\n",
		t.AccessToken, t.RefreshToken, t.ExpirationDate)
}

func runRegister(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	save := fs.String("save", "", "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	fmt.Fprintln(e.stderr, "posagent ecr: waiting for an operator to approve on the terminal")
	t, err := e.c.Register(ctx, pos[0])
	if err != nil {
		return e.fail(err)
	}
	e.printTokens(t)
	if *save != "" {
		if err := writeTokenFile(*save, tokenFile{Name: pos[0], Tokens: t}); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stderr, "posagent ecr: tokens saved to %s\n", *save)
	}
	return exitOK
}

func runRevoke(e *ecrCLI, ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	refresh := fs.String("refresh", "", "")
	from := fs.String("from", "", "")
	pos, err := parseVerb(fs, args, 1, 1)
	if err != nil {
		return e.fail(err)
	}
	if (*refresh == "") == (*from == "") {
		return e.fail(usagef("revoke: give -refresh TOKEN or -from FILE"))
	}
	r := *refresh
	if *from != "" {
		t, err := readTokenFile(*from)
		if err != nil {
			return e.fail(err)
		}
		if t.RefreshToken == "" {
			return e.fail(fmt.Errorf("token file %s holds no refreshToken", *from))
		}
		r = t.RefreshToken
		// The header token is the one the refresh token belongs to, unless the command line
		// chose another.
		if !e.ownToken {
			e.c.SetToken(t.AccessToken)
		}
	}
	t, err := e.c.Revoke(ctx, pos[0], r)
	if err != nil {
		return e.fail(err)
	}
	e.printTokens(t)
	if *from != "" {
		// The old pair stopped working when the terminal answered: the file must hold the new.
		if err := writeTokenFile(*from, tokenFile{Name: pos[0], Tokens: t}); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stderr, "posagent ecr: %s updated\n", *from)
	}
	return exitOK
}

func runCall(e *ecrCLI, ctx context.Context, args []string) int {
	pos, err := parseVerb(flag.NewFlagSet("call", flag.ContinueOnError), args, 1, -1)
	if err != nil {
		return e.fail(err)
	}
	q := url.Values{}
	for _, kv := range pos[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return e.fail(usagef("call: %q is not key=value", kv))
		}
		q.Add(k, v)
	}
	env, err := e.c.Call(ctx, pos[0], q)
	var ae *ecrclient.APIError
	if err != nil && !errors.As(err, &ae) {
		return e.fail(err)
	}
	// Success or error answer, the envelope is what this verb is for.
	if e.json {
		e.printEnvelope(env)
	} else {
		b, _ := json.MarshalIndent(env, "", "  ")
		fmt.Fprintf(e.stdout, "HTTP %d\n%s\n", env.HTTP, b)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "posagent ecr:", err)
		return exitFail
	}
	return exitOK
}
