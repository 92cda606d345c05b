package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

// procUsage is what one process of the simulator (or the broker) costs.
type procUsage struct {
	Role         string  `json:"role"` // "fleetsim" (this process), "worker i/K", "broker"
	PID          int     `json:"pid"`
	Terminals    int     `json:"terminals,omitempty"`
	RSSBytes     int64   `json:"rssBytes"`     // resident set now (VmRSS)
	PeakRSSBytes int64   `json:"peakRssBytes"` // its high-water mark (VmHWM)
	HeapBytes    uint64  `json:"heapBytes,omitempty"`
	Goroutines   uint64  `json:"goroutines,omitempty"`
	CPUUserSec   float64 `json:"cpuUserSec"`
	CPUSysSec    float64 `json:"cpuSysSec"`
	FDs          int     `json:"fds,omitempty"` // open file descriptors
}

// CPUSec is user plus system time.
func (u procUsage) CPUSec() float64 { return u.CPUUserSec + u.CPUSysSec }

var usageSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/sched/goroutines:goroutines"},
}

// selfUsage measures this process: CPU from getrusage, memory from /proc/self/status, heap
// and goroutines from runtime/metrics (no stop-the-world).
func selfUsage(role string) procUsage {
	u := procUsage{Role: role, PID: os.Getpid()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		u.CPUUserSec = tvSec(ru.Utime)
		u.CPUSysSec = tvSec(ru.Stime)
	}
	u.RSSBytes, u.PeakRSSBytes = procStatus("self")
	s := make([]metrics.Sample, len(usageSamples))
	copy(s, usageSamples)
	metrics.Read(s)
	if v := s[0].Value; v.Kind() == metrics.KindUint64 {
		u.HeapBytes = v.Uint64()
	}
	if v := s[1].Value; v.Kind() == metrics.KindUint64 {
		u.Goroutines = v.Uint64()
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		u.FDs = len(ents)
	}
	return u
}

func tvSec(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// pidUsage measures another process (the broker) from /proc: memory from status, CPU from
// stat. Zero figures where /proc is missing.
func pidUsage(role string, pid int) procUsage {
	u := procUsage{Role: role, PID: pid}
	if pid <= 0 {
		return u
	}
	p := strconv.Itoa(pid)
	u.RSSBytes, u.PeakRSSBytes = procStatus(p)
	u.CPUUserSec, u.CPUSysSec = procCPU(p)
	if ents, err := os.ReadDir("/proc/" + p + "/fd"); err == nil {
		u.FDs = len(ents)
	}
	return u
}

// procStatus reads VmRSS and VmHWM of /proc/PID/status, in bytes.
func procStatus(pid string) (rss, hwm int64) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0
	}
	return parseStatus(data)
}

// parseStatus takes VmRSS and VmHWM from the text of /proc/PID/status.
func parseStatus(data []byte) (rss, hwm int64) {
	for line := range bytes.Lines(data) {
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			rss = kbField(line)
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			hwm = kbField(line)
		}
	}
	return rss, hwm
}

// kbField parses "Name:   1234 kB" into bytes.
func kbField(line []byte) int64 {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n < 0 || n > 1<<50 {
		return 0
	}
	return n << 10
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU reads utime and stime of /proc/PID/stat, in seconds.
func procCPU(pid string) (user, sys float64) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0
	}
	return parseStat(data)
}

// parseStat takes utime and stime from the text of /proc/PID/stat.
func parseStat(data []byte) (user, sys float64) {
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(data[i+1:]))
	// After the name: state is field 3, utime field 14, stime field 15.
	const utime = 14 - 3
	if len(f) <= utime+1 {
		return 0, 0
	}
	// Clock ticks, unsigned: ParseFloat would take "-1", "NaN" and "Inf" as figures.
	ut, err1 := strconv.ParseUint(f[utime], 10, 64)
	st, err2 := strconv.ParseUint(f[utime+1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return float64(ut) / clockTicks, float64(st) / clockTicks
}

// numCPU is reported with the figures: they mean little without it.
func numCPU() int { return runtime.NumCPU() }
