//go:build unix

package component

import (
	"os/exec"
	"syscall"
)

// killGroup runs the installer in its own process group and kills the whole group when the
// run is cancelled: an installer script's children (a flashing tool) must not outlive it.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
