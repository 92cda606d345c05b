package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill a worker whose parent died without closing it, so that
// no part of a fleet outlives the run (its stdin ending is the orderly way).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// exitedUsage is an exited process's CPU time as the kernel counted it. Its ru_maxrss is left
// out: Linux carries the parent's peak across fork and exec into it, so the worker's own
// VmHWM is the figure.
func exitedUsage(ps *os.ProcessState) (procUsage, bool) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return procUsage{}, false
	}
	return procUsage{CPUUserSec: tvSec(ru.Utime), CPUSysSec: tvSec(ru.Stime)}, true
}
