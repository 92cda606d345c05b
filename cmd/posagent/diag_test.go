package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/diag/diagclient/porttest"
)

// runDiag runs `posagent diag args…` and returns its exit code and output.
func runDiag(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"diag"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// diagTokenFile writes a technician token for p to a file.
func diagTokenFile(t *testing.T, p *porttest.Port, role auth.Role) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(p.Token(role)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDiagCLIStatusAndActions(t *testing.T) {
	p := porttest.Start(t, false)
	tf := diagTokenFile(t, p, auth.RoleService)
	base := []string{"-addr", p.URL, "-token-file", tf}
	dcli := func(args ...string) (int, string, string) {
		return runDiag(append(append([]string{}, base...), args...)...)
	}

	code, out, errs := dcli("status")
	for _, want := range []string{porttest.Serial, "connected", "downloading [########............] 42%", "pin tdes KCV A1B2C3",
		"KZT sales 2 = 1500.00", "logLevel=info", "printer ok; pinpad gone"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s%s", want, out, errs)
		}
	}
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	code, out, _ = dcli("-json", "status")
	var st diag.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Identity.Serial != porttest.Serial {
		t.Fatalf("status -json: %d %v %s", code, err, out)
	}

	code, out, _ = dcli("selftest")
	if code != 1 || !strings.Contains(out, "pinpad") || !strings.Contains(out, "FAILED") || !strings.Contains(out, "1 device failed") {
		t.Fatalf("selftest: %d\n%s", code, out)
	}
	if code, out, _ = dcli("print-test"); code != 1 || !strings.Contains(out, "paper out") {
		t.Fatalf("print-test: %d %s", code, out)
	}
	if code, out, _ = dcli("echo", "host"); code != 0 || !strings.Contains(out, "rttMs=12") {
		t.Fatalf("echo host: %d %s", code, out)
	}
	if code, out, _ = dcli("card-test", "-wait", "5"); code != 0 || !strings.Contains(out, "pan=411111******1111") {
		t.Fatalf("card-test: %d %s", code, out)
	}
	if code, _, _ = dcli("approve", "reg-1"); code != 0 {
		t.Fatalf("approve: %d", code)
	}
	if code, _, _ = dcli("params", "set", "logLevel", "debug"); code != 0 {
		t.Fatalf("params set: %d", code)
	}
	if code, out, _ = dcli("params"); code != 0 || !strings.Contains(out, "[debug|info|warn|error]") {
		t.Fatalf("params: %d %s", code, out)
	}
	if code, _, errs = dcli("params", "set", "nope", "x"); code != 1 || !strings.Contains(errs, "bad_request") {
		t.Fatalf("params set nope: %d %s", code, errs)
	}
	if code, out, _ = dcli("-json", "settle"); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("settle -json: %d %s", code, out)
	}

	calls := p.Terminal.Calls()
	var got []string
	for _, c := range calls {
		got = append(got, c.Action+string(c.Params))
	}
	want := []string{"selftest", "test.print", "echo.host", `test.card{"timeoutSec":5}`, `ecr.approve{"id":"reg-1"}`,
		`params.set{"name":"logLevel","value":"debug"}`, `params.set{"name":"nope","value":"x"}`, "settle"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("terminal ran\n%v\nwant\n%v", got, want)
	}

	bf := filepath.Join(t.TempDir(), "b.tar.gz")
	if code, out, _ = dcli("bundle", "-o", bf); code != 0 || !strings.Contains(out, "bytes written") {
		t.Fatalf("bundle: %d %s", code, out)
	}
	f, err := os.Open(bf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != porttest.BundleContent {
		t.Fatalf("bundle holds %q", b)
	}

	if code, out, _ = dcli("events", "-n", "5"); code != 0 || !strings.Contains(out, "hw.paperLow  device=printer") {
		t.Fatalf("events: %d %s", code, out)
	}
	if code, out, _ = dcli("logs", "-n", "1"); code != 0 || strings.TrimSpace(out) != `level=WARN msg="paper low"` {
		t.Fatalf("logs: %d %q", code, out)
	}
	if code, out, _ = dcli("audit", "verify"); code != 0 || !strings.Contains(out, "audit.verify: ok") {
		t.Fatalf("audit verify: %d %s", code, out)
	}
	if code, out, _ = dcli("audit", "-n", "200"); code != 0 || !strings.Contains(out, "diag.login") || !strings.Contains(out, "tech42") {
		t.Fatalf("audit: %d %s", code, out)
	}
	// Each command signed in and out again.
	logins, logouts := len(p.Entries("diag.login")), len(p.Entries("diag.logout"))
	if logins != 16 || logouts != 16 {
		t.Fatalf("%d sign-ins, %d sign-outs", logins, logouts)
	}
}

func TestDiagCLIUsageAndRefusals(t *testing.T) {
	p := porttest.Start(t, false)
	tf := diagTokenFile(t, p, auth.RoleService)
	for _, args := range [][]string{
		{},
		{"-addr", p.URL, "-token-file", tf, "explode"},
		{"-addr", p.URL, "-token-file", tf, "echo", "mars"},
		{"-addr", p.URL, "-token-file", tf, "approve"},
		{"-addr", p.URL, "-token-file", tf, "bundle"},
		{"-addr", p.URL, "-token-file", tf, "selftest", "extra"},
		{"-addr", p.URL, "-token-file", tf, "-password-env", "X", "status"},
		{"-addr", p.URL, "-token-file", filepath.Join(t.TempDir(), "none"), "status"},
		{"-addr", p.URL, "-password-env", "POSAGENT_TEST_UNSET_VAR", "status"},
		{"-nope"},
	} {
		if code, _, _ := runDiag(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := runDiag("-h"); code != 0 {
		t.Errorf("-h: %d", code)
	}
	if len(p.Terminal.Calls()) != 0 || len(p.Entries("diag.login")) != 0 {
		t.Fatal("a usage error reached the port")
	}

	ro := diagTokenFile(t, p, auth.RoleReadOnly)
	code, _, errs := runDiag("-addr", p.URL, "-token-file", ro, "selftest")
	if code != 1 || !strings.Contains(errs, "forbidden") {
		t.Fatalf("read-only selftest: %d %s", code, errs)
	}
	if code, _, _ := runDiag("-addr", p.URL, "-token-file", ro, "status"); code != 0 {
		t.Fatalf("read-only status: %d", code)
	}

	t.Setenv("POSAGENT_TEST_DIAG_PW", "guess-9981")
	code, _, errs = runDiag("-addr", p.URL, "-password-env", "POSAGENT_TEST_DIAG_PW", "status")
	if code != 1 || !strings.Contains(errs, "bad_credentials") || strings.Contains(errs, "guess-9981") {
		t.Fatalf("wrong password: %d %s", code, errs)
	}
	t.Setenv("POSAGENT_TEST_DIAG_PW", porttest.AdminPassword)
	if code, out, errs := runDiag("-addr", p.URL, "-password-env", "POSAGENT_TEST_DIAG_PW", "status"); code != 0 || !strings.Contains(out, porttest.Serial) {
		t.Fatalf("admin password: %d %s", code, errs)
	}
	if len(p.Terminal.Calls()) != 0 {
		t.Fatal("a refused command ran an action")
	}
}

func TestDiagCLIPasswordFromStdin(t *testing.T) {
	p := porttest.Start(t, false)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := diagStdin
	diagStdin = r
	t.Cleanup(func() { diagStdin = old; r.Close() })
	if _, err := w.WriteString(porttest.AdminPassword + "\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	code, out, errs := runDiag("-addr", p.URL, "status")
	if code != 0 || !strings.Contains(out, porttest.Serial) || strings.Contains(out+errs, porttest.AdminPassword) {
		t.Fatalf("password from a pipe: %d %s %s", code, out, errs)
	}
}

func TestDiagCLIAddressFromConfig(t *testing.T) {
	p := porttest.Start(t, false)
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "posagent.toml")
	body := "data_dir = \"" + dir + "\"\n[diag]\nlisten = \"" + u.Host + "\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tf := diagTokenFile(t, p, auth.RoleService)
	if code, out, errs := runDiag("-config", cfg, "-token-file", tf, "status"); code != 0 || !strings.Contains(out, porttest.Serial) {
		t.Fatalf("address from the configuration: %d %s %s", code, out, errs)
	}
	off := filepath.Join(dir, "off.toml")
	if err := os.WriteFile(off, []byte("data_dir = \""+dir+"\"\n[diag]\nlisten = \"off\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runDiag("-config", off, "-token-file", tf, "status"); code != 2 || !strings.Contains(errs, "off") {
		t.Fatalf("port off: %d %s", code, errs)
	}
}

func TestDiagCLITLS(t *testing.T) {
	p := porttest.Start(t, true)
	tf := diagTokenFile(t, p, auth.RoleService)
	if code, _, errs := runDiag("-addr", p.URL, "-token-file", tf, "status"); code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("unknown certificate: %d %s", code, errs)
	}
	ca := filepath.Join(t.TempDir(), "port.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Server.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runDiag("-addr", p.URL, "-ca", ca, "-token-file", tf, "status"); code != 0 || !strings.Contains(out, porttest.Serial) {
		t.Fatalf("-ca: %d %s %s", code, out, errs)
	}
	if code, _, errs := runDiag("-addr", p.URL, "-insecure", "-token-file", tf, "status"); code != 0 {
		t.Fatalf("-insecure: %d %s", code, errs)
	}
}
