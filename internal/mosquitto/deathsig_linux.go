package mosquitto

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the broker when its parent dies without stopping it (a
// panic, a test timeout, a kill), so that no broker outlives the process that started it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
