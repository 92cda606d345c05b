//go:build !linux

package main

import (
	"os"
	"os/exec"
)

// setDeathSignal has no portable equivalent outside Linux; a worker still exits when its stdin
// ends.
func setDeathSignal(*exec.Cmd) {}

// exitedUsage is not available outside Linux: the worker's last report stands.
func exitedUsage(*os.ProcessState) (procUsage, bool) { return procUsage{}, false }
