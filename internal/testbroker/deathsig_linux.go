package testbroker

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the broker if the test binary dies without cleaning up
// (a panic, a timeout, a kill), so that no broker outlives its test run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
