package sysinfo

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

func fixture(root string) *Collector {
	c := New("")
	c.root = root
	return c
}

func TestSnapshotFromFixture(t *testing.T) {
	if _, err := exec.LookPath("getprop"); err == nil {
		t.Skip("getprop present: OS release comes from Android, not the fixture")
	}
	s := fixture("testdata/root").Snapshot(context.Background())
	if s.Kernel != "6.1.0-posagent-arm64" || s.OSRelease != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("kernel %q, release %q", s.Kernel, s.OSRelease)
	}
	if s.UptimeSec != 93784 || s.Load1 != 0.52 || s.Load5 != 0.31 || s.Load15 != 0.12 {
		t.Errorf("uptime %d, load %v %v %v", s.UptimeSec, s.Load1, s.Load5, s.Load15)
	}
	if s.MemTotal != 1918332*1024 || s.MemAvailable != 1024000*1024 || s.ProcessRSS != 12288*1024 {
		t.Errorf("mem %d/%d, rss %d", s.MemTotal, s.MemAvailable, s.ProcessRSS)
	}
	if s.OS != runtime.GOOS || s.Arch != runtime.GOARCH || s.Go.Goroutines == 0 {
		t.Errorf("platform %s/%s, %d goroutines", s.OS, s.Arch, s.Go.Goroutines)
	}
}

func TestMissingSourcesGiveZeros(t *testing.T) {
	s := fixture(t.TempDir()).Snapshot(context.Background())
	if s.Kernel != "" || s.UptimeSec != 0 || s.Load1 != 0 || s.MemTotal != 0 || s.ProcessRSS != 0 || s.DiskTotal != 0 {
		t.Errorf("empty root gave %+v", s)
	}
	// The Go runtime numbers never depend on the file system.
	if s.Go.Goroutines == 0 || s.Go.Sys == 0 || s.Go.HeapAlloc == 0 {
		t.Errorf("go runtime = %+v", s.Go)
	}
}

func TestSnapshotOfThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	dir := t.TempDir()
	// The data directory need not exist yet: its nearest parent's file system is measured.
	s := New(filepath.Join(dir, "not", "yet")).Snapshot(context.Background())
	if s.Kernel == "" || s.UptimeSec == 0 || s.MemTotal == 0 || s.MemAvailable == 0 || s.ProcessRSS == 0 {
		t.Errorf("proc numbers missing: %+v", s)
	}
	if s.DiskTotal == 0 || s.DiskFree > s.DiskTotal {
		t.Errorf("disk %d free of %d", s.DiskFree, s.DiskTotal)
	}
	if s.MemAvailable > s.MemTotal {
		t.Errorf("available %d above total %d", s.MemAvailable, s.MemTotal)
	}
	for _, ifc := range s.Interfaces {
		if ifc.Name == "lo" || !ifc.Up {
			t.Errorf("interface %s (up %v) reported", ifc.Name, ifc.Up)
		}
		for _, a := range ifc.Addrs {
			if strings.HasPrefix(a, "fe80:") || strings.HasPrefix(a, "169.254.") {
				t.Errorf("link-local address %s reported", a)
			}
		}
	}
}

func TestSnapshotEncodesWithCamelCaseKeys(t *testing.T) {
	s := fixture("testdata/root").Snapshot(context.Background())
	s.Interfaces = []Interface{{Name: "eth0", Up: true, MAC: "02:00:00:00:00:01", Addrs: []string{"192.0.2.7/24"}}}
	b, err := tmsproto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := tmsproto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"os", "arch", "kernel", "uptimeSec", "load1", "memTotal", "memAvailable",
		"processRss", "diskTotal", "diskFree", "interfaces", "go"} {
		if _, ok := m[k]; !ok {
			t.Errorf("encoded snapshot lacks %q: %v", k, m)
		}
	}
}

func TestParsersTolerateGarbage(t *testing.T) {
	if parseUptime([]byte("x y")) != 0 || parseUptime(nil) != 0 || parseUptime([]byte("-5 1")) != 0 {
		t.Error("parseUptime accepted garbage")
	}
	if a, b, c := parseLoadavg([]byte("0.1 nope 0.3")); a != 0 || b != 0 || c != 0 {
		t.Error("parseLoadavg accepted garbage")
	}
	m := parseKB([]byte("MemTotal: lots kB\nMemAvailable:\nVmRSS: 99999999999999999999 kB\nX: 5\n"), "MemTotal", "MemAvailable", "VmRSS", "X")
	if len(m) != 1 || m["X"] != 5 {
		t.Errorf("parseKB = %v", m)
	}
	if v := parseKB([]byte("VmRSS: 18014398509481984 kB\n"), "VmRSS"); len(v) != 0 {
		t.Errorf("overflowing kB value kept: %v", v)
	}
	if prettyName([]byte("PRETTY_NAME='Alpine'\n")) != "Alpine" || prettyName([]byte("NAME=x")) != "" {
		t.Error("prettyName")
	}
}

func TestExistingAncestor(t *testing.T) {
	dir := t.TempDir()
	if got := existingAncestor(filepath.Join(dir, "a", "b")); got != dir {
		t.Errorf("existingAncestor = %q, want %q", got, dir)
	}
	if got := existingAncestor(dir); got != dir {
		t.Errorf("existingAncestor = %q", got)
	}
	if got := existingAncestor(""); got != "" {
		t.Errorf("existingAncestor(\"\") = %q", got)
	}
}

func TestResourcesAgreeWithSnapshot(t *testing.T) {
	c := fixture("testdata/root")
	c.dataDir = t.TempDir()
	r := c.Resources()
	s := c.Snapshot(context.Background())
	if r.ProcessRSS != 12288*1024 || r.ProcessRSS != s.ProcessRSS {
		t.Errorf("rss %d, snapshot %d", r.ProcessRSS, s.ProcessRSS)
	}
	if r.DiskTotal == 0 || r.DiskFree > r.DiskTotal {
		t.Errorf("disk %d free of %d", r.DiskFree, r.DiskTotal)
	}
}

// BenchmarkResources is the diagnostics history's sample against the whole snapshot the
// statistics take: the sampler runs every few seconds.
func BenchmarkResources(b *testing.B) {
	c := New(b.TempDir())
	b.Run("resources", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Resources()
		}
	})
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Snapshot(context.Background())
		}
	})
}
