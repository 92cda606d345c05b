package mosquitto_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/mosquitto"
)

const childEnv = "MOSQUITTO_TEST_CHILD_DIR"

// TestBrokerDiesWithParent: a process that starts a broker and exits without stopping it
// (as a crashed test or simulator would) does not leave the broker behind.
func TestBrokerDiesWithParent(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		s, err := mosquitto.Start(mosquitto.Options{Dir: dir, TMSPassword: "x"})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(s.PID())
		os.Exit(0) // without Stop
	}
	requireMosquitto(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokerDiesWithParent$")
	cmd.Env = append(os.Environ(), childEnv+"="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			// go test -exec qemu-…-static: the kernel cannot run the foreign test binary
			// itself, only through the emulator, which this test cannot know.
			t.Skipf("cannot re-execute the test binary here: %v", err)
		}
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v (%s)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("child printed %q", line)
	}
	for deadline := time.Now().Add(wait); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("broker %d outlived its parent", pid)
		}
	}
}

// alive reports whether pid runs; a zombie waiting for a reaper counts as dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the command's closing parenthesis.
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}
