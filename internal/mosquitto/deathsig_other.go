//go:build !linux

package mosquitto

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; the owner must Stop the broker.
func setDeathSignal(*exec.Cmd) {}
