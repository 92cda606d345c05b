package mosquitto

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// listening reports whether process pid has a socket listening on port. Probing the port
// with a connection would not do: another program holding the port would answer for a
// broker that failed to bind, and the probe would count against max_connections.
func listening(pid, port int) bool {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil || len(fds) == 0 {
		return false
	}
	inodes := make(map[string]bool, len(fds))
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	want := fmt.Sprintf(":%04X", port)
	for _, table := range []string{"tcp", "tcp6"} {
		if listeningIn(fmt.Sprintf("/proc/%d/net/%s", pid, table), want, inodes) {
			return true
		}
	}
	return false
}

// listeningIn scans a /proc/net/tcp table for a LISTEN socket (state 0A) whose local address
// ends in port (":HHHH") and whose inode is one of inodes.
func listeningIn(path, port string, inodes map[string]bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], port) {
			continue
		}
		if inodes[fields[9]] {
			return true
		}
	}
	return false
}

// canCheckListening: listening works on Linux.
const canCheckListening = true
