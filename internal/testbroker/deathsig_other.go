//go:build !linux

package testbroker

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; Cleanup stops the broker.
func setDeathSignal(*exec.Cmd) {}
