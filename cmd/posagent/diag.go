package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/diagclient"
	"github.com/posagent/posagent/agent/ecr/access"
)

const diagUsageText = `usage: posagent diag [flags] <command> [arguments]

Talks to a running agent's diagnostics port as a technician (docs/diag.md). Signs in with a
technician token (-token-file) or the administrator password (-password-env, else asked for),
runs the command, and signs out. Every sign-in and action is in the terminal's audit log.

commands:
  status                       identity, connectivity, hardware, update, resources (-json: raw)
  selftest                     test every device
  print-test | pinpad-test | led-test | buzzer-test | drawer-test
  card-test [-wait SEC]        read a card: masked number and entry mode
  echo tms|host                round trip to the TMS broker or the acquirer host
  approve ID | reject ID       a cash register's registration request
  lock | unlock                take the terminal out of service, or back
  settle                       settle the batch now
  bundle -o FILE               download the diagnostics bundle (.tar.gz)
  params                       the local parameters
  params set NAME VALUE        set one
  events [-n N] | logs [-n N]  recent events, recent agent log lines
  audit [-n N]                 recent audit entries
  audit verify                 verify the audit hash chain

Exit status: 0 success, 1 the action failed or an error, 2 usage.

flags:
`

// defaultDiagAddr is the port's address when neither -addr nor the configuration says.
const defaultDiagAddr = "http://127.0.0.1:8091"

// diagStdin is where a password prompt reads (a test swaps it for a pipe).
var diagStdin = os.Stdin

type diagCLI struct {
	c      *diagclient.Client
	json   bool
	stdout io.Writer
	stderr io.Writer
}

// diagVerb checks a command's arguments and returns what runs it once signed in; ok false is
// a usage error (reported already), found before anything reaches the port.
type diagVerb func(d *diagCLI, args []string) (run runner, ok bool)

// simpleActions are the verbs that run one action without parameters.
var simpleActions = map[string]string{
	"selftest":    diag.ActSelfTest,
	"print-test":  diag.ActPrintTest,
	"pinpad-test": diag.ActPINPadTest,
	"led-test":    diag.ActLEDTest,
	"buzzer-test": diag.ActBuzzerTest,
	"drawer-test": diag.ActDrawerTest,
	"lock":        diag.ActLock,
	"unlock":      diag.ActUnlock,
	"settle":      diag.ActSettle,
}

func diagVerbs(name string) (diagVerb, bool) {
	if act, ok := simpleActions[name]; ok {
		return func(d *diagCLI, args []string) (runner, bool) {
			if len(args) != 0 {
				fmt.Fprintf(d.stderr, "posagent diag %s: takes no arguments\n", name)
				return nil, false
			}
			return d.runAct(act, nil), true
		}, true
	}
	v, ok := map[string]diagVerb{
		"status":    diagStatus,
		"card-test": diagCardTest,
		"echo":      diagEcho,
		"approve":   diagECR(diag.ActECRApprove),
		"reject":    diagECR(diag.ActECRReject),
		"bundle":    diagBundle,
		"params":    diagParams,
		"events":    diagEvents,
		"logs":      diagLogs,
		"audit":     diagAudit,
	}[name]
	return v, ok
}

func diagCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("posagent diag", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), diagUsageText)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "", "the port's `URL` (default: from the configuration's [diag] listen, else "+defaultDiagAddr+")")
	cfgPath := fs.String("config", "", "the agent's configuration `file` (default "+config.DefaultPath+" when it exists)")
	tokenFile := fs.String("token-file", "", "read the technician token from `FILE` (\"-\": standard input)")
	passwordEnv := fs.String("password-env", "", "read the administrator password from the environment `VAR`")
	insecure := fs.Bool("insecure", false, "do not verify the port's certificate")
	caFile := fs.String("ca", "", "trust the port's certificate (or its CA) in PEM `FILE`")
	asJSON := fs.Bool("json", false, "print the answers as JSON")
	timeout := fs.Duration("timeout", 3*time.Minute, "bound on the whole command")
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
	verb, ok := diagVerbs(name)
	if !ok {
		fmt.Fprintf(stderr, "posagent diag: unknown command %q (posagent diag -h lists them)\n", name)
		return exitUsage
	}
	if *tokenFile != "" && *passwordEnv != "" {
		fmt.Fprintln(stderr, "posagent diag: -token-file and -password-env exclude each other")
		return exitUsage
	}

	base, pinned, err := diagTarget(*addr, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "posagent diag:", err)
		return exitUsage
	}
	hc, err := diagHTTPClient(*insecure, *caFile, pinned)
	if err != nil {
		fmt.Fprintln(stderr, "posagent diag:", err)
		return exitUsage
	}
	cred, err := diagCredentials(*tokenFile, *passwordEnv, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "posagent diag:", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	d := &diagCLI{c: diagclient.New(base, hc), json: *asJSON, stdout: stdout, stderr: stderr}
	runVerb, ok := verb(d, verbArgs)
	if !ok {
		return exitUsage
	}
	if _, err := d.c.Login(ctx, cred); err != nil {
		fmt.Fprintln(stderr, "posagent diag: sign-in:", err)
		return exitFail
	}
	defer func() {
		// Sign out even after an interrupt: the session should not outlive the command.
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer lcancel()
		if err := d.c.Logout(lctx); err != nil {
			fmt.Fprintln(stderr, "posagent diag: sign-out:", err)
		}
	}()
	return runVerb(ctx)
}

// diagTarget is the port's URL: -addr, else the configuration's [diag] listen, else the
// default. pinned is the agent's own certificate file when the configuration names one
// readable here (the command runs on the terminal itself).
func diagTarget(addr, cfgPath string) (base, pinned string, err error) {
	if addr != "" {
		return addr, "", nil
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		if cfgPath != "" {
			return "", "", err
		}
		return defaultDiagAddr, "", nil
	}
	listen := cfg.Diag.Listen
	if listen == "" {
		return defaultDiagAddr, "", nil
	}
	if cfg.DiagOff() {
		return "", "", fmt.Errorf("the diagnostics port is off in the configuration ([diag] listen = \"off\"); give -addr")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("[diag] listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening everywhere: loopback is one of them
	}
	scheme := "http"
	if cfg.DiagTLS() {
		scheme = "https"
		pinned = cfg.Diag.CertFile
		if pinned == "" {
			pinned = filepath.Join(cfg.DataDir, "diag-tls", access.CertFileName)
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), pinned, nil
}

// maxPEM bounds a certificate file.
const maxPEM = 256 << 10

func diagHTTPClient(insecure bool, caFile, pinned string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	switch {
	case insecure:
	case caFile != "":
		pool, err := readPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	case pinned != "":
		// The agent's own certificate, when this runs on the terminal: trust it as it is.
		if pool, err := readPool(pinned); err == nil {
			cfg.RootCAs = pool
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

func readPool(path string) (*x509.CertPool, error) {
	b, err := readBoundedFile(path, maxPEM)
	if err != nil {
		return nil, fmt.Errorf("-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// readBoundedFile reads at most limit bytes of path ("-": standard input), refusing more.
func readBoundedFile(path string, limit int64) ([]byte, error) {
	var r io.Reader = diagStdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// diagCredentials: the token file, else the password from the environment, else asked for.
func diagCredentials(tokenFile, passwordEnv string, prompt io.Writer) (diagclient.Credentials, error) {
	switch {
	case tokenFile != "":
		b, err := readBoundedFile(tokenFile, 8<<10)
		if err != nil {
			return diagclient.Credentials{}, fmt.Errorf("token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return diagclient.Credentials{}, fmt.Errorf("token file %s is empty", tokenFile)
		}
		return diagclient.Credentials{Token: tok}, nil
	case passwordEnv != "":
		pw := os.Getenv(passwordEnv)
		if pw == "" {
			return diagclient.Credentials{}, fmt.Errorf("$%s is empty or unset", passwordEnv)
		}
		return diagclient.Credentials{Password: pw}, nil
	}
	pw, err := readPassword(diagStdin, prompt)
	if err != nil {
		return diagclient.Credentials{}, err
	}
	if pw == "" {
		return diagclient.Credentials{}, errors.New("no password given")
	}
	return diagclient.Credentials{Password: pw}, nil
}

// readPassword asks for the administrator password: without echo on a terminal, a plain
// line otherwise (a script piping it in).
func readPassword(in *os.File, prompt io.Writer) (string, error) {
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(prompt, "Administrator password: ")
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", fmt.Errorf("turn the echo off: %w", err)
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(prompt)
	}()
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// ---- verbs ----

// act runs an action and prints its outcome: 0 when it succeeded, 1 when not.
func (d *diagCLI) act(ctx context.Context, action string, params any) int {
	var result json.RawMessage
	ok, err := d.c.Act(ctx, action, params, &result)
	var ae *diagclient.ActionError
	if err != nil && !errors.As(err, &ae) {
		fmt.Fprintf(d.stderr, "posagent diag: %s: %v\n", action, err)
		return exitFail
	}
	if d.json {
		out := map[string]any{"action": action, "ok": ok}
		if ae != nil {
			out["error"] = ae.Message
		}
		if len(result) > 0 {
			out["result"] = result
		}
		d.printJSON(out)
	} else {
		d.describe(action, ok, ae, result)
	}
	if !ok {
		return exitFail
	}
	return exitOK
}

// describe prints an action's outcome for a person.
func (d *diagCLI) describe(action string, ok bool, ae *diagclient.ActionError, result json.RawMessage) {
	w := d.stdout
	if action == diag.ActSelfTest {
		var st diag.SelfTestResult
		_ = json.Unmarshal(result, &st)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range st.Results {
			state := "ok"
			switch {
			case r.Skipped:
				state = "skipped"
			case !r.OK:
				state = "FAILED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Device, r.Kind, state, r.Detail)
		}
		_ = tw.Flush()
	}
	if !ok {
		fmt.Fprintf(w, "%s: FAILED: %s\n", action, ae.Message)
		return
	}
	var fields map[string]any
	if json.Unmarshal(result, &fields) != nil || action == diag.ActSelfTest {
		fields = nil
	}
	var parts []string
	for _, k := range sortedKeys(fields) {
		if v := fields[k]; v != nil {
			if _, nested := v.(map[string]any); nested {
				continue
			}
			if _, list := v.([]any); list {
				continue
			}
			parts = append(parts, k+"="+fieldText(v))
		}
	}
	line := action + ": ok"
	if len(parts) > 0 {
		line += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintln(w, line)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (d *diagCLI) printJSON(v any) {
	enc := json.NewEncoder(d.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// runAct is a verb's runner for one action.
func (d *diagCLI) runAct(action string, params any) runner {
	return func(ctx context.Context) int { return d.act(ctx, action, params) }
}

func (d *diagCLI) fail(what string, err error) int {
	fmt.Fprintf(d.stderr, "posagent diag: %s: %v\n", what, err)
	return exitFail
}

type runner = func(ctx context.Context) int

func diagCardTest(d *diagCLI, args []string) (runner, bool) {
	fs := flag.NewFlagSet("posagent diag card-test", flag.ContinueOnError)
	fs.SetOutput(d.stderr)
	wait := fs.Int("wait", 30, "how long to wait for a card, in `seconds`")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *wait < 1 {
		return nil, false
	}
	return d.runAct(diag.ActCardTest, map[string]int{"timeoutSec": *wait}), true
}

func diagEcho(d *diagCLI, args []string) (runner, bool) {
	if len(args) != 1 || (args[0] != "tms" && args[0] != "host") {
		fmt.Fprintln(d.stderr, "usage: posagent diag echo tms|host")
		return nil, false
	}
	return d.runAct("echo."+args[0], nil), true
}

func diagECR(action string) diagVerb {
	return func(d *diagCLI, args []string) (runner, bool) {
		if len(args) != 1 || args[0] == "" {
			fmt.Fprintf(d.stderr, "usage: posagent diag %s ID\n", strings.TrimPrefix(action, "ecr."))
			return nil, false
		}
		return d.runAct(action, map[string]string{"id": args[0]}), true
	}
}

func diagBundle(d *diagCLI, args []string) (runner, bool) {
	fs := flag.NewFlagSet("posagent diag bundle", flag.ContinueOnError)
	fs.SetOutput(d.stderr)
	out := fs.String("o", "", "write the bundle to `FILE`")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *out == "" {
		fmt.Fprintln(d.stderr, "usage: posagent diag bundle -o FILE")
		return nil, false
	}
	return func(ctx context.Context) int {
		// Written to a temporary file and renamed: a download cut half-way leaves no file
		// that looks complete.
		pf, err := renameio.NewPendingFile(*out, renameio.WithPermissions(0o600))
		if err != nil {
			return d.fail("bundle", err)
		}
		defer func() { _ = pf.Cleanup() }()
		cw := &countingWriter{w: pf}
		if err := d.c.Bundle(ctx, cw); err != nil {
			return d.fail("bundle", err)
		}
		if err := pf.CloseAtomicallyReplace(); err != nil {
			return d.fail("bundle", err)
		}
		fmt.Fprintf(d.stdout, "bundle: %d bytes written to %s\n", cw.n, *out)
		return exitOK
	}, true
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func diagParams(d *diagCLI, args []string) (runner, bool) {
	if len(args) == 3 && args[0] == "set" {
		return d.runAct(diag.ActParamsSet, map[string]string{"name": args[1], "value": args[2]}), true
	}
	if len(args) != 0 {
		fmt.Fprintln(d.stderr, "usage: posagent diag params [set NAME VALUE]")
		return nil, false
	}
	return func(ctx context.Context) int {
		st, err := d.c.Status(ctx)
		if err != nil {
			return d.fail("params", err)
		}
		if d.json {
			d.printJSON(st.Params)
			return exitOK
		}
		tw := tabwriter.NewWriter(d.stdout, 0, 0, 2, ' ', 0)
		for _, p := range st.Params {
			v := p.Value
			if p.Pending {
				v += " (at next start)"
			}
			choices := ""
			if len(p.Choices) > 0 {
				choices = "[" + strings.Join(p.Choices, "|") + "]"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, v, choices, p.Description)
		}
		_ = tw.Flush()
		return exitOK
	}, true
}

// countFlag parses a verb's only flag, -n.
func countFlag(d *diagCLI, verb string, args []string, def int) (n int, rest []string, ok bool) {
	fs := flag.NewFlagSet("posagent diag "+verb, flag.ContinueOnError)
	fs.SetOutput(d.stderr)
	np := fs.Int("n", def, "how many, newest last")
	if err := fs.Parse(args); err != nil || *np < 1 {
		return 0, nil, false
	}
	return *np, fs.Args(), true
}

func diagEvents(d *diagCLI, args []string) (runner, bool) {
	n, rest, ok := countFlag(d, "events", args, 50)
	if !ok || len(rest) != 0 {
		return nil, false
	}
	return func(ctx context.Context) int {
		ev, err := d.c.Events(ctx, n)
		if err != nil {
			return d.fail("events", err)
		}
		if d.json {
			d.printJSON(ev)
			return exitOK
		}
		for _, e := range ev {
			var f []string
			for _, k := range sortedKeys(e.Fields) {
				f = append(f, k+"="+fieldText(e.Fields[k]))
			}
			fmt.Fprintf(d.stdout, "%s  %s  %s\n", e.Time.Local().Format(time.DateTime), e.Kind, strings.Join(f, " "))
		}
		return exitOK
	}, true
}

func diagLogs(d *diagCLI, args []string) (runner, bool) {
	n, rest, ok := countFlag(d, "logs", args, 100)
	if !ok || len(rest) != 0 {
		return nil, false
	}
	return func(ctx context.Context) int {
		lines, err := d.c.Logs(ctx, n)
		if err != nil {
			return d.fail("logs", err)
		}
		if d.json {
			d.printJSON(lines)
			return exitOK
		}
		for _, l := range lines {
			fmt.Fprintln(d.stdout, l)
		}
		return exitOK
	}, true
}

func diagAudit(d *diagCLI, args []string) (runner, bool) {
	if len(args) == 1 && args[0] == "verify" {
		return d.runAct(diag.ActAuditVerify, nil), true
	}
	n, rest, ok := countFlag(d, "audit", args, 50)
	if !ok || len(rest) != 0 {
		fmt.Fprintln(d.stderr, "usage: posagent diag audit [-n N] | audit verify")
		return nil, false
	}
	return func(ctx context.Context) int {
		es, err := d.c.Audit(ctx, n)
		if err != nil {
			return d.fail("audit", err)
		}
		if d.json {
			d.printJSON(es)
			return exitOK
		}
		for _, e := range es {
			var f []string
			for _, k := range sortedKeys(e.Fields) {
				f = append(f, k+"="+fieldText(e.Fields[k]))
			}
			fmt.Fprintf(d.stdout, "#%d  %s  %-6s %-8s %-20s %s  %s\n", e.Seq, e.Time.Local().Format(time.DateTime),
				e.Source, e.Outcome, e.Action, e.Actor, strings.Join(f, " "))
		}
		return exitOK
	}, true
}

func diagStatus(d *diagCLI, args []string) (runner, bool) {
	if len(args) != 0 {
		fmt.Fprintln(d.stderr, "usage: posagent diag status")
		return nil, false
	}
	return func(ctx context.Context) int {
		st, err := d.c.Status(ctx)
		if err != nil {
			return d.fail("status", err)
		}
		if d.json {
			d.printJSON(st)
			return exitOK
		}
		printStatus(d.stdout, st)
		return exitOK
	}, true
}

// printStatus is the human summary of the status page.
func printStatus(w io.Writer, st diag.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	id := st.Identity
	row("Terminal", "%s (%s, board %s), device %s%s%s", id.Serial, strings.TrimSpace(id.Vendor+" "+id.Model), id.Board,
		id.DeviceID, optional(", terminal id ", id.TerminalID), optional(", merchant ", joinNonEmpty(" ", id.MerchantID, id.MerchantName)))
	ag := st.Agent
	row("Agent", "%s (slot %s, %s), up %s%s", ag.Version, ag.Slot, ag.Target, (time.Duration(ag.UptimeS) * time.Second).String(),
		optional(", last trial ", ag.LastTrial))
	tms := "disconnected"
	if st.TMS.Connected {
		tms = "connected"
	}
	row("TMS", "%s  %s  (connects %d, failures %d)%s", tms, st.TMS.Broker, st.TMS.Connects, st.TMS.Failures,
		optional(", last error: ", st.TMS.LastError))
	if st.Host.Configured {
		row("Host", "%s  %s%s  (reversals owed %d, held %d)", st.Host.State, st.Host.Address,
			map[bool]string{true: " (test)"}[st.Host.Test], st.Host.Reversals, st.Host.Held)
	} else {
		row("Host", "not configured")
	}
	var hw []string
	for _, dv := range st.Hardware {
		hw = append(hw, dv.Name+" "+dv.State+optional(" (", dv.Detail)+map[bool]string{true: ")"}[dv.Detail != ""])
	}
	row("Hardware", "%s", strings.Join(hw, "; "))
	row("Update", "%s", otaLine(st.OTA))
	row("Outbox", "%d records, %s%s", st.Outbox.Records, humanBytes(st.Outbox.Bytes), map[bool]string{true: "  ALARM"}[st.Outbox.Alarm])
	row("Config", "version %d", st.Config.Version)
	for i, k := range st.Keys {
		label := ""
		if i == 0 {
			label = "Keys"
		}
		row(label, "%s %s KCV %s", k.Role, k.Alg, k.KCV)
	}
	row("Licence", "%s%s%s", st.License.State, optional(" ", st.License.ID), optional(": ", st.License.Reason))
	batch := fmt.Sprintf("#%d, %d transactions", st.Batch.Number, st.Batch.Count)
	for _, t := range st.Batch.Totals {
		batch += fmt.Sprintf("; %s sales %d = %s, refunds %d = %s", t.Currency, t.SalesCount, minor(t.SalesAmount),
			t.RefundCount, minor(t.RefundAmount))
	}
	if st.Batch.Settling {
		batch += " (settling)"
	}
	row("Batch", "%s", batch)
	r := st.Resources
	row("Resources", "CPU %.1f%%, RSS %s, heap %s, %d goroutines, disk free %s of %s", r.CPUPercent, humanBytes(r.RSSBytes),
		humanBytes(r.HeapBytes), r.Goroutines, humanBytes(r.DiskFree), humanBytes(r.DiskTotal))
	ecr := "off"
	if st.ECR.Listen != "" {
		ecr = st.ECR.Listen + map[bool]string{true: " (protected)"}[st.ECR.Protected]
	}
	for _, p := range st.ECR.Pending {
		ecr += fmt.Sprintf("; waiting: %s %s", p.ID, p.Name)
	}
	row("ECR", "%s", ecr)
	var ps []string
	for _, p := range st.Params {
		ps = append(ps, p.Name+"="+p.Value+map[bool]string{true: " (at next start)"}[p.Pending])
	}
	row("Params", "%s", strings.Join(ps, ", "))
	for _, s := range st.Services {
		row("Service", "%s %s (restarts %d)%s", s.Name, s.State, s.Restarts, optional(": ", s.LastError))
	}
	_ = tw.Flush()
}

func otaLine(o diag.OTAStatus) string {
	if o.Stage == "" {
		return "idle" + optional(", last trial ", o.LastTrial)
	}
	bar := strings.Repeat("#", o.Progress/5) + strings.Repeat(".", 20-min(20, o.Progress/5))
	return fmt.Sprintf("%s [%s] %d%%%s", o.Stage, bar, o.Progress, optional(" job ", o.Job))
}

func optional(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}

func joinNonEmpty(sep string, vs ...string) string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return strings.Join(out, sep)
}

func minor(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return sign + strconv.FormatInt(v/100, 10) + "." + fmt.Sprintf("%02d", v%100)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// fieldText prints a field decoded from JSON: whole numbers (unix times, counts) come back as
// float64 and would otherwise print as 1.795e+09.
func fieldText(v any) string {
	if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(v)
}
