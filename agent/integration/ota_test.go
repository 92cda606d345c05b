package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/otatest"
	"github.com/posagent/posagent/internal/testpki"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/install/apk/apktest"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/update"
)

// otaRig is an in-process agent on the sim board with a release key, a blob server, a
// system component installer script that records its calls, and a fake Android package
// manager on PATH.
type otaRig struct {
	*env
	t      *testing.T
	a      *agent.Agent
	rel    otatest.Key
	blobs  *otatest.Server
	dir    string // the test's files
	images string // the "images" location
	hooks  string // what the component installer recorded
	pm     *apktest.Fake
}

func newOTARig(t *testing.T, dev string, extra string) *otaRig {
	t.Helper()
	e := newEnv(t, dev)
	r := &otaRig{env: e, t: t, rel: otatest.NewKey(t, "rel-1"), dir: t.TempDir()}
	r.images = filepath.Join(r.dir, "images")
	r.hooks = filepath.Join(r.dir, "hook.log")
	hook := filepath.Join(r.dir, "install-component.sh")
	script := "#!/bin/sh\necho \"$1 $2 $(wc -c < \"$3\")\" >> " + r.hooks + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.pm = apktest.Install(t)
	r.blobs = otatest.Serve(t, e.broker.URL(), e.broker.TMSUser(), e.broker.TMSPassword())
	r.a = e.startInProcessAgent(fmt.Sprintf(`
[[license.release_keys]]
id = %q
public_key = %q

[ota]
component_installer = [%q, "{name}", "{version}", "{file}"]
package_manager = "pm"
max_component_size = "4MiB"
locations = { images = %q }
%s`, r.rel.ID, base64.StdEncoding.EncodeToString(r.rel.Public()), hook, r.images, extra))
	// Commands sent before the agent's first subscription would be lost with the broker.
	waitFor(t, 20*time.Second, "online", func() bool { return e.onlineVersion() != "" })
	return r
}

// file writes content into the test's folder and returns its path.
func (r *otaRig) file(name string, content []byte) string {
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// component describes and serves a file.
func (r *otaRig) component(c manifest.Component, path string) manifest.Component {
	c = otatest.FileComponent(r.t, c, path)
	r.blobs.Add(r.t, path)
	return c
}

// command sends kind with body and waits (up to timeout) for its final ack; it returns all
// acks of the command, de-duplicated by uplink seq.
func (r *otaRig) command(kind string, body any, timeout time.Duration) []tmsproto.Ack {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent, err := r.tms.Send(ctx, r.device, r.key, tmsproto.Command{Kind: kind, Body: cborBody(r.t, body)})
	if err != nil {
		r.t.Fatal(err)
	}
	return r.waitFinal(sent.Match(), timeout)
}

func (r *otaRig) waitFinal(m tmsclient.AckMatch, timeout time.Duration) []tmsproto.Ack {
	r.t.Helper()
	var out []tmsproto.Ack
	waitFor(r.t, timeout, "final ack of "+m.ID, func() bool {
		out = r.acks(m)
		return len(out) > 0 && out[len(out)-1].State.Final()
	})
	return out
}

func final(acks []tmsproto.Ack) tmsproto.Ack { return acks[len(acks)-1] }

func stages(acks []tmsproto.Ack) []string {
	var s []string
	for _, a := range acks {
		if a.Stage != "" && (len(s) == 0 || s[len(s)-1] != a.Stage) {
			s = append(s, a.Stage)
		}
	}
	return s
}

func (r *otaRig) install(body update.InstallBody, timeout time.Duration) []tmsproto.Ack {
	return r.command("ota.install", body, timeout)
}

func result(t *testing.T, a tmsproto.Ack) update.Result {
	t.Helper()
	var res update.Result
	if len(a.Result) > 0 {
		if err := looseUnmarshal(a.Result, &res); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// A release of every kind the sim board installs, pulled over MQTT: a file, a configuration
// bundle, a system component through the board's installer and a CA certificate. Stages are
// reported in order, and sending the release again installs nothing.
func TestOTAInstallsARelease(t *testing.T) {
	r := newOTARig(t, "IT-OTA-1", "")
	logo := bytes.Repeat([]byte("logo!"), 50_000) // 250 kB: several blocks
	doc := termconfig.Default()
	doc.Version = 7
	docRaw, err := tmsproto.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	rel := manifest.Release{Name: "2026.11.1", Serial: 10, Components: []manifest.Component{
		r.component(manifest.Component{Name: "logo", Kind: manifest.KindFile, Version: "1.0", Location: "images", Path: "logo.png"}, r.file("logo.png", logo)),
		r.component(manifest.Component{Name: "params", Kind: manifest.KindConfig, Version: "7"}, r.file("config.cbor", docRaw)),
		r.component(manifest.Component{Name: "secure-fw", Kind: manifest.KindComponent, Version: "3.2.1"}, r.file("fw.bin", []byte("firmware image"))),
		r.component(manifest.Component{Name: "host-ca", Kind: manifest.KindCertificate, Version: "1", Location: "ca"}, r.file("ca.pem", caPEM)),
	}}
	// Signed once: the same release sent again below must be these very bytes (a second
	// signing would stamp another issue time and make it another release of serial 10).
	signed := r.rel.Sign(t, rel)
	acks := r.install(update.InstallBody{Manifest: signed, Now: true}, time.Minute)
	if a := final(acks); a.State != tmsproto.StateSucceeded {
		t.Fatalf("install: %+v", a)
	}
	if got, want := strings.Join(stages(acks), ","), "downloading,verifying,waiting,installing"; got != want {
		t.Errorf("stages %s, want %s", got, want)
	}
	res := result(t, final(acks))
	if len(res.Installed) != 4 || res.Release != "2026.11.1" {
		t.Errorf("result %+v", res)
	}
	if got, err := os.ReadFile(filepath.Join(r.images, "logo.png")); err != nil || !bytes.Equal(got, logo) {
		t.Errorf("logo: %d bytes, %v", len(got), err)
	}
	if v := r.a.Config().Version; v != 7 {
		t.Errorf("configuration version %d, want 7", v)
	}
	if hook, err := os.ReadFile(r.hooks); err != nil || string(hook) != "secure-fw 3.2.1 14\n" {
		t.Errorf("installer calls %q, %v", hook, err)
	}
	if info, ok, err := r.a.Certificates().Get("host-ca"); err != nil || !ok || info.Usage != "ca" {
		t.Errorf("certificate: %+v %v %v", info, ok, err)
	}
	inst := r.a.OTA().Status().Installed
	if inst["secure-fw"].Version != "3.2.1" || inst["logo"].Release != "2026.11.1" {
		t.Errorf("installed %+v", inst)
	}

	// The same release again: nothing to do, and nothing is run twice.
	again := r.install(update.InstallBody{Manifest: signed, Now: true}, time.Minute)
	if a := final(again); a.State != tmsproto.StateSucceeded || len(result(t, a).Installed) != 0 {
		t.Fatalf("again: %+v %+v", a, result(t, a))
	}
	if hook, _ := os.ReadFile(r.hooks); strings.Count(string(hook), "\n") != 1 {
		t.Errorf("the installer ran again: %q", hook)
	}
}

// Every kind of bad release is refused with its reason, and what runs stays as it was.
func TestOTARefusesBadReleases(t *testing.T) {
	r := newOTARig(t, "IT-OTA-2", "")
	good := r.file("v1.txt", []byte("version one"))
	base := manifest.Release{Name: "r1", Serial: 5, Components: []manifest.Component{
		r.component(manifest.Component{Name: "motd", Kind: manifest.KindFile, Version: "1.0", Location: "images", Path: "motd.txt"}, good)}}
	if a := final(r.install(update.InstallBody{Manifest: r.rel.Sign(t, base), Now: true}, time.Minute)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("baseline: %+v", a)
	}
	installedBefore := r.a.OTA().Status().Installed

	other := otatest.NewKey(t, "rel-x")
	// Each case's release has a serial above the last one accepted: a refused release still
	// raises the key's high-water mark once its signature was accepted.
	serial := uint64(5)
	next := func(edit func(*manifest.Release)) manifest.Release {
		serial++
		rel := manifest.Release{Name: fmt.Sprintf("r%d", serial), Serial: serial, Components: []manifest.Component{
			r.component(manifest.Component{Name: "motd", Kind: manifest.KindFile, Version: "2.0", Location: "images", Path: "motd.txt"},
				r.file("v2.txt", []byte("version two")))}}
		if edit != nil {
			edit(&rel)
		}
		return rel
	}
	signed := func(edit func(*manifest.Release)) func() update.InstallBody {
		return func() update.InstallBody { return update.InstallBody{Manifest: r.rel.Sign(t, next(edit))} }
	}
	cases := []struct {
		name   string
		body   func() update.InstallBody
		state  tmsproto.State
		reason string
	}{
		{"bad signature", func() update.InstallBody {
			m := r.rel.Sign(t, next(nil))
			m[len(m)-3] ^= 0x40
			return update.InstallBody{Manifest: m}
		}, tmsproto.StateRejected, "bad_signature"},
		{"unknown key", func() update.InstallBody { return update.InstallBody{Manifest: other.Sign(t, next(nil))} }, tmsproto.StateRejected, "unknown_key"},
		{"mixed releases", func() update.InstallBody {
			return update.InstallBody{Manifest: r.rel.Sign(t, next(nil)), Sources: map[string]update.SourceSpec{"other-release-app": {}}}
		}, tmsproto.StateRejected, "mixed_release"},
		{"expired", signed(func(m *manifest.Release) {
			m.Issued, m.Expires = time.Now().Add(-48*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
		}), tmsproto.StateFailed, "expired"},
		{"rollback", signed(func(m *manifest.Release) { m.Serial = 4 }), tmsproto.StateFailed, "rollback"},
		{"downgrade", signed(func(m *manifest.Release) { m.Components[0].Version = "0.9" }), tmsproto.StateFailed, "downgrade"},
		{"wrong model", signed(func(m *manifest.Release) { m.Components[0].Models = []string{"F20"} }), tmsproto.StateFailed, "wrong_model"},
		{"oversized", signed(func(m *manifest.Release) { m.Components[0].Size = 5 << 20 }), tmsproto.StateFailed, "too_large"},
		// Served under its announced hash, but with other bytes (a corrupt or lying mirror).
		{"hash mismatch", signed(func(m *manifest.Release) {
			m.Components[0].SHA256 = bytes.Repeat([]byte{9}, 32)
			r.blobs.AddAs(blob.ID(m.Components[0].SHA256), r.file("liar.txt", []byte("version 2!!")))
		}), tmsproto.StateFailed, "hash_mismatch"},
		{"truncated", signed(func(m *manifest.Release) {
			m.Components[0].Size += 100
			m.Components[0].SHA256 = bytes.Repeat([]byte{7}, 32)
			r.blobs.AddAs(blob.ID(m.Components[0].SHA256), r.file("short.txt", []byte("version two")))
		}), tmsproto.StateFailed, "truncated"},
		{"agent without launcher", signed(func(m *manifest.Release) {
			m.Components = append(m.Components, otatest.FileComponent(t, manifest.Component{Name: "agent", Kind: manifest.KindAgent,
				Version: "9.0.0", Arch: otatest.Arch()}, good))
		}), tmsproto.StateFailed, "no_launcher"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body()
			body.Now = true
			a := final(r.install(body, time.Minute))
			if a.State != c.state || string(a.Reason) != c.reason {
				t.Fatalf("ack %s/%s %q, want %s/%s", a.State, a.Reason, a.Message, c.state, c.reason)
			}
			if got, _ := os.ReadFile(filepath.Join(r.images, "motd.txt")); string(got) != "version one" {
				t.Errorf("installed file changed: %q", got)
			}
			if inst := r.a.OTA().Status().Installed; inst["motd"].Version != installedBefore["motd"].Version {
				t.Errorf("installed %+v", inst)
			}
		})
	}
}

// file.put over HTTPS Range from a "virtual host" whose CA came with cert.put.
func TestFilePutOverHTTPSWithDeliveredCA(t *testing.T) {
	r := newOTARig(t, "IT-OTA-3", "")
	ca := testpki.NewCA(t)
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("tariff;"), 40_000)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.ServeContent(w, req, "tariffs.csv", time.Now(), bytes.NewReader(content))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "vhost")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	sum := sha256.Sum256(content)
	body := map[string]any{"location": "params", "name": "tariffs.csv", "size": len(content), "sha256": sum[:], "url": srv.URL + "/tariffs.csv", "ca": "vhost"}
	// Without the CA the terminal does not trust the virtual host.
	if a := final(r.command("file.put", body, time.Minute)); a.State != tmsproto.StateFailed {
		t.Fatalf("untrusted host: %+v", a)
	}
	if a := final(r.command("cert.put", map[string]any{"name": "vhost", "usage": "ca", "pem": string(caPEM)}, time.Minute)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("cert.put: %+v", a)
	}
	if a := final(r.command("file.put", body, time.Minute)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("file.put: %+v", a)
	}
	got, err := os.ReadFile(filepath.Join(r.a.DataDir(), "files", "params", "tariffs.csv"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("file: %d bytes, %v", len(got), err)
	}
	// A certificate that is not a CA is refused as one, and nothing changes.
	leafFile, _ := testpki.WriteFiles(t, "leaf", ca.Server(t, "leaf"))
	leaf, err := os.ReadFile(leafFile)
	if err != nil {
		t.Fatal(err)
	}
	if a := final(r.command("cert.put", map[string]any{"name": "vhost", "usage": "ca", "pem": string(leaf)}, time.Minute)); a.State != tmsproto.StateFailed {
		t.Fatalf("leaf as CA: %+v", a)
	}
}

// apps.set makes the installed Android packages the signed set: installs and upgrades what is
// missing, removes what the agent installed before and the set dropped, never touches the
// platform's packages; a package manager failure fails the command with its code.
func TestAppsSet(t *testing.T) {
	r := newOTARig(t, "IT-OTA-4", "")
	r.pm.Preinstall("com.android.settings", 30)
	app := func(pkg string, code int64) manifest.Component {
		path := apktest.MakeAPK(t, r.dir, pkg, code)
		return r.component(manifest.Component{Name: pkg, Kind: manifest.KindAPK, Version: fmt.Sprint(code), Package: pkg, VersionCode: code}, path)
	}
	set := func(serial uint64, apps ...manifest.Component) []tmsproto.Ack {
		return r.command("apps.set", update.AppsBody{Manifest: r.rel.Sign(t, manifest.Release{Name: fmt.Sprintf("set-%d", serial),
			Serial: serial, Components: apps}), Now: true}, time.Minute)
	}
	if a := final(set(1, app("com.shop.a", 3), app("com.shop.b", 1))); a.State != tmsproto.StateSucceeded {
		t.Fatalf("set 1: %+v", a)
	}
	if a := final(set(2, app("com.shop.a", 4))); a.State != tmsproto.StateSucceeded {
		t.Fatalf("set 2: %+v", a)
	} else if res := result(t, a); len(res.Removed) != 1 || res.Removed[0] != "com.shop.b" {
		t.Errorf("removed %v", res.Removed)
	}
	got := r.pm.Installed()
	if got["com.shop.a"] != 4 || got["com.android.settings"] != 30 || len(got) != 2 {
		t.Fatalf("installed %v", got)
	}
	r.pm.FailOn("install", "com.shop.c")
	a := final(set(3, app("com.shop.a", 4), app("com.shop.c", 1)))
	if a.State != tmsproto.StateFailed || a.Reason != "install_failed" || !strings.Contains(a.Message, "INSTALL_FAILED") {
		t.Fatalf("failing install: %+v", a)
	}
}

// An install waits for the maintenance window; ota.cancel stops it there and nothing is
// installed.
func TestOTAWaitsForTheWindowAndCancels(t *testing.T) {
	r := newOTARig(t, "IT-OTA-5", "")
	doc := termconfig.Default()
	doc.Version = 2
	start := time.Now().Add(3 * time.Hour)
	doc.TMS.MaintenanceWindow = termconfig.TimeWindow{Start: start.Format("15:04"), End: start.Add(time.Hour).Format("15:04")}
	doc.TMS.UpdatesOnlyInWindow = true
	if a := final(r.command("config.apply", cborRaw(mustEncode(t, doc)), time.Minute)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("config: %+v", a)
	}
	rel := manifest.Release{Name: "r1", Serial: 1, Components: []manifest.Component{
		r.component(manifest.Component{Name: "motd", Kind: manifest.KindFile, Version: "1.0", Location: "images", Path: "motd.txt"}, r.file("m.txt", []byte("hello")))}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent, err := r.tms.Send(ctx, r.device, r.key, tmsproto.Command{Kind: "ota.install", Body: cborBody(t, update.InstallBody{Manifest: r.rel.Sign(t, rel)})})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "waiting stage", func() bool {
		for _, a := range r.acks(sent.Match()) {
			if a.Stage == "waiting" {
				return true
			}
		}
		return false
	})
	if a := final(r.command("ota.cancel", map[string]any{"command": sent.Command.ID}, time.Minute)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("cancel: %+v", a)
	}
	a := final(r.waitFinal(sent.Match(), time.Minute))
	if a.State != tmsproto.StateFailed || a.Reason != "cancelled" {
		t.Fatalf("install after cancel: %+v", a)
	}
	if _, err := os.Stat(filepath.Join(r.images, "motd.txt")); !os.IsNotExist(err) {
		t.Errorf("file installed despite the cancel: %v", err)
	}
}
