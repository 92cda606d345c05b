//go:build !linux

package serial

import (
	"errors"
	"os"
)

// The agent runs on Linux and Android; elsewhere (a developer's Mac) the flag is refused
// rather than silently ignored.
func setHardwareFlow(*os.File) error {
	return errors.New("rts/cts flow control is only implemented on Linux")
}

func deviceID(string) uint64 { return 0 }
