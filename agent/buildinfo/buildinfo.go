// Package buildinfo tells which build of the agent is running.
//
// Version, Commit and Date are stamped by the release build with
//
//	-ldflags "-X github.com/posagent/posagent/agent/buildinfo.Version=1.2.3 …"
//
// because the TMS decides what to install from the version the terminal reports, and a
// developer build must never pass for a release.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Stamped at link time; the defaults mark a developer build.
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

type settings struct {
	goarm    string
	revision string
	modified bool
}

// readSettings is cached: build settings never change while the process runs.
var readSettings = sync.OnceValue(func() settings {
	var s settings
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "GOARM":
			s.goarm = kv.Value
		case "vcs.revision":
			s.revision = kv.Value
		case "vcs.modified":
			s.modified = kv.Value == "true"
		}
	}
	return s
})

// Target is the platform the binary was built for, e.g. "linux/arm64" or "linux/arm/v7".
// The GOARM level matters: a v6 binary runs on a v7 terminal, not the other way round.
func Target() string {
	t := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		if v := readSettings().goarm; v != "" {
			t += "/v" + v
		}
	}
	return t
}

// Revision is Commit, or the VCS revision the Go toolchain recorded when nothing was stamped
// (a plain `go build` in a checkout), so a developer build still names its source.
func Revision() string {
	if Commit != "unknown" && Commit != "" {
		return Commit
	}
	s := readSettings()
	if s.revision == "" {
		return "unknown"
	}
	r := s.revision
	if len(r) > 12 {
		r = r[:12]
	}
	if s.modified {
		r += "+dirty"
	}
	return r
}

// String is the one-line answer of `posagent version`.
func String() string {
	return fmt.Sprintf("posagent %s (commit %s, built %s, %s, %s)",
		Version, Revision(), Date, Target(), runtime.Version())
}
