package sysinfo

import "syscall"

// diskSpace is the size of the file system holding dir and the space available to an
// unprivileged writer (the reserved blocks are not ours to count on).
func diskSpace(dir string) (total, free uint64) {
	if dir == "" {
		return 0, 0
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs
}
