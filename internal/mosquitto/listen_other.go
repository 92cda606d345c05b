//go:build !linux

package mosquitto

// listening cannot see another process's sockets portably; waitListening probes the port
// with a connection instead.
func listening(pid, port int) bool { return false }

const canCheckListening = false
