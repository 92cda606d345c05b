// Package sysinfo takes a snapshot of the machine for the statistics the TMS receives:
// identity of the OS, uptime and load, memory, this process, disk space, network interfaces
// and Go runtime numbers.
//
// Everything is best effort. A missing or unreadable source (no /proc in a container, no
// getprop off Android, a data directory not created yet) leaves its fields at zero: statistics
// with a gap are worth more than no statistics.
package sysinfo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Snapshot is one reading. Sizes are in bytes.
type Snapshot struct {
	Hostname     string      `cbor:"hostname,omitempty"`
	OS           string      `cbor:"os"`
	Arch         string      `cbor:"arch"`
	Kernel       string      `cbor:"kernel,omitempty"`    // kernel release
	OSRelease    string      `cbor:"osRelease,omitempty"` // "Android 14", "Debian GNU/Linux 12 (bookworm)"
	UptimeSec    uint64      `cbor:"uptimeSec"`
	Load1        float64     `cbor:"load1"`
	Load5        float64     `cbor:"load5"`
	Load15       float64     `cbor:"load15"`
	MemTotal     uint64      `cbor:"memTotal"`
	MemAvailable uint64      `cbor:"memAvailable"`
	ProcessRSS   uint64      `cbor:"processRss"`
	DiskTotal    uint64      `cbor:"diskTotal"` // file system holding the data directory
	DiskFree     uint64      `cbor:"diskFree"`  // available to the agent
	Interfaces   []Interface `cbor:"interfaces,omitempty"`
	Go           GoRuntime   `cbor:"go"`
}

// Interface is a network interface other than loopback.
type Interface struct {
	Name  string   `cbor:"name"`
	Up    bool     `cbor:"up"`
	MAC   string   `cbor:"mac,omitempty"`
	Addrs []string `cbor:"addrs,omitempty"` // CIDR notation
}

// GoRuntime are the Go runtime's own numbers, to watch the agent's memory budget.
// Only the three that show a leak are sent: every field costs mobile data every hour.
type GoRuntime struct {
	Goroutines int    `cbor:"goroutines"`
	HeapAlloc  uint64 `cbor:"heapAlloc"`
	Sys        uint64 `cbor:"sys"` // all memory the runtime holds from the OS
}

// Collector takes snapshots. The zero value is not usable; use New.
type Collector struct {
	dataDir string
	root    string // "/" in production; a fixture tree in tests
}

// New returns a Collector reporting disk space of the file system holding dataDir.
func New(dataDir string) *Collector { return &Collector{dataDir: dataDir, root: "/"} }

// The OS release does not change while the agent runs; it is looked up once per root.
var (
	releaseMu    sync.Mutex
	releaseCache = map[string]string{}
)

func (c *Collector) path(p string) string { return filepath.Join(c.root, p) }

// Snapshot reads everything now. ctx bounds the one external command (Android's getprop).
func (c *Collector) Snapshot(ctx context.Context) Snapshot {
	s := Snapshot{OS: runtime.GOOS, Arch: runtime.GOARCH}
	if h, err := os.Hostname(); err == nil {
		s.Hostname = h
	}
	s.Kernel = firstLine(readSmall(c.path("proc/sys/kernel/osrelease")))
	s.OSRelease = c.release(ctx)
	s.UptimeSec = parseUptime(readSmall(c.path("proc/uptime")))
	s.Load1, s.Load5, s.Load15 = parseLoadavg(readSmall(c.path("proc/loadavg")))
	mem := parseKB(readSmall(c.path("proc/meminfo")), "MemTotal", "MemAvailable")
	s.MemTotal, s.MemAvailable = mem["MemTotal"], mem["MemAvailable"]
	s.ProcessRSS = parseKB(readSmall(c.path("proc/self/status")), "VmRSS")["VmRSS"]
	s.DiskTotal, s.DiskFree = diskSpace(existingAncestor(c.dataDir))
	s.Interfaces = interfaces()
	s.Go = goRuntime()
	return s
}

// maxProcFile bounds what is read from one /proc file; the ones used here are far smaller.
const maxProcFile = 64 << 10

// readSmall reads a /proc file whole (they have no size to stat). Buffers grow from a few
// hundred bytes as needed: a fixed 64 KiB buffer per file made every snapshot's garbage, taken
// every few seconds by the diagnostics history, hold megabytes of resident memory.
func readSmall(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxProcFile))
	return b
}

// Resources is the part of a snapshot that changes from second to second and is cheap to
// read: the process's resident memory and the data directory's disk space.
type Resources struct {
	ProcessRSS uint64
	DiskTotal  uint64
	DiskFree   uint64
}

// Resources reads only what Resources holds (one /proc file and one statfs), for samplers
// that run far more often than the statistics.
func (c *Collector) Resources() Resources {
	var r Resources
	r.ProcessRSS = parseKB(readSmall(c.path("proc/self/status")), "VmRSS")["VmRSS"]
	r.DiskTotal, r.DiskFree = diskSpace(existingAncestor(c.dataDir))
	return r
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line))
}

// parseUptime reads the first field of /proc/uptime ("12345.67 23456.78").
func parseUptime(b []byte) uint64 {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0
	}
	return uint64(v)
}

// parseLoadavg reads the first three fields of /proc/loadavg.
func parseLoadavg(b []byte) (l1, l5, l15 float64) {
	f := strings.Fields(string(b))
	var v [3]float64
	for i := 0; i < 3 && i < len(f); i++ {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil || x < 0 {
			return 0, 0, 0
		}
		v[i] = x
	}
	return v[0], v[1], v[2]
}

// parseKB reads "Name:   1234 kB" lines (meminfo, status) and returns the wanted ones in bytes.
func parseKB(b []byte, names ...string) map[string]uint64 {
	out := make(map[string]uint64, len(names))
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && strings.EqualFold(f[1], "kB") {
			if v > (1<<64-1)/1024 {
				continue
			}
			v *= 1024
		}
		out[name] = v
	}
	return out
}

// release names the OS: Android's version from getprop, else os-release's PRETTY_NAME.
func (c *Collector) release(ctx context.Context) string {
	releaseMu.Lock()
	defer releaseMu.Unlock()
	if v, ok := releaseCache[c.root]; ok {
		return v
	}
	v := ""
	if p := getprop(ctx, "ro.build.version.release"); p != "" {
		v = "Android " + p
	} else {
		for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
			if v = prettyName(readSmall(c.path(p))); v != "" {
				break
			}
		}
	}
	if v != "" {
		releaseCache[c.root] = v
	}
	return v
}

func prettyName(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "PRETTY_NAME="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// getprop asks Android's property service; it returns "" where there is no getprop.
func getprop(ctx context.Context, name string) string {
	bin, err := exec.LookPath("getprop")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, name).Output()
	if err != nil || len(out) > 256 {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// existingAncestor is dir or its nearest existing parent, so disk space is known before the
// data directory has been created.
func existingAncestor(dir string) string {
	if dir == "" {
		return ""
	}
	d := filepath.Clean(dir)
	for {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return d
		}
		d = parent
	}
}

func interfaces() []Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []Interface
	for _, ifc := range ifs {
		// Loopback and interfaces that are down say nothing about the terminal's link and
		// cost mobile data every hour; so do link-local addresses.
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		it := Interface{Name: ifc.Name, Up: true, MAC: ifc.HardwareAddr.String()}
		if addrs, err := ifc.Addrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && (ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsLoopback()) {
					continue
				}
				it.Addrs = append(it.Addrs, a.String())
			}
		}
		out = append(out, it)
	}
	return out
}

func goRuntime() GoRuntime {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return GoRuntime{Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc, Sys: ms.Sys}
}
