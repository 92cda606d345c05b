//go:build unix

package apk

import (
	"os/exec"
	"syscall"
)

// killGroup runs pm in its own process group and kills the group on timeout: pm is a shell
// script on Android that starts app_process, which must not outlive the call.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
