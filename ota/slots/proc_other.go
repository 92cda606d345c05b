//go:build !linux

package slots

import (
	"os"
	"syscall"
)

// childAttr: without Pdeathsig outside Linux, a child may outlive a killed launcher; the
// terminals are Linux and Android, this is for building elsewhere.
func childAttr() *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process) { _ = p.Kill() }
