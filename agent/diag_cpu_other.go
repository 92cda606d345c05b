//go:build !unix

package agent

import "time"

// processCPU is not measured on this system: the charts show 0 %.
func processCPU() (time.Duration, bool) { return 0, false }
