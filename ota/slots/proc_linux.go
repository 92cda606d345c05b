package slots

import (
	"os"
	"syscall"
)

// childAttr puts the child in its own process group (so that a kill reaches what it started,
// e.g. an installer hook) and has the kernel SIGKILL it when the launcher dies: a launcher
// restarted by the service manager must never find a second agent still running.
//
// Pdeathsig fires when the thread that forked exits, not the process; the Go runtime only ends
// threads of goroutines that exit while locked to them, which the launcher never does.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup SIGKILLs the child's process group, the child included.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}
