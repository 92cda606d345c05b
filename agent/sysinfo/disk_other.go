//go:build !linux

package sysinfo

// diskSpace is not measured off Linux (developer machines only).
func diskSpace(string) (total, free uint64) { return 0, 0 }
