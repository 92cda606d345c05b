package testbroker

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mosquittoPath finds the broker binary. Debian installs it in /usr/sbin, which is not on
// every user's PATH.
func mosquittoPath() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/mosquitto"
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", errors.New("mosquitto not found on PATH or in /usr/sbin")
}

// mosquittoProc is one running mosquitto process.
type mosquittoProc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startMosquitto writes the configuration (first start only) and starts mosquitto. On the
// first start it picks a free port, retrying if another process takes it first; later starts
// reuse the port so that clients reconnect to the same URL.
func (b *Broker) startMosquitto() error {
	bin, err := mosquittoPath()
	if err != nil {
		return err
	}
	if b.port != 0 {
		return b.runMosquitto(bin)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		b.port = port
		err = b.runMosquitto(bin)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "in use") {
			if err != nil {
				b.port = 0
			}
			return err
		}
	}
}

func (b *Broker) runMosquitto(bin string) error {
	conf, err := b.writeMosquittoConfig()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	p := &mosquittoProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := waitListening(p, net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))); err != nil {
		_ = p.stop()
		return fmt.Errorf("%w; log tail:\n%s", err, lastLines(b.log.String(), 10))
	}
	b.proc = p
	return nil
}

// waitListening returns once addr accepts TCP connections, or with an error once the process
// has exited or startTimeout has passed.
func waitListening(p *mosquittoProc, addr string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("mosquitto exited during start-up: %v", p.waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto not listening on %s after %v: %w", addr, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM, on which mosquitto saves its persistence file and exits.
func (p *mosquittoProc) stop() error {
	select {
	case <-p.done:
		return fmt.Errorf("mosquitto had already exited: %v", p.waitErr)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal mosquitto: %w", err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("mosquitto exit: %w", p.waitErr)
		}
		return nil
	case <-time.After(startTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("mosquitto ignored SIGTERM for %v and was killed", startTimeout)
	}
}

// writeMosquittoConfig writes mosquitto.conf, the password file and the ACL file into b.dir
// and returns the configuration's path.
func (b *Broker) writeMosquittoConfig() (string, error) {
	passwd := filepath.Join(b.dir, "passwd")
	acl := filepath.Join(b.dir, "acl")
	conf := filepath.Join(b.dir, "mosquitto.conf")

	var pw bytes.Buffer
	users := map[string]string{tmsUser: b.tmsPass}
	for id, p := range b.devices {
		users[id] = p
	}
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		line, err := mosquittoPasswordLine(u, users[u])
		if err != nil {
			return "", err
		}
		pw.WriteString(line + "\n")
	}

	// The production ACL: the TMS sees every terminal, a terminal only itself.
	aclText := "user " + tmsUser + "\ntopic readwrite tms/v1/#\n\npattern readwrite tms/v1/%u/#\n"

	var c strings.Builder
	fmt.Fprintf(&c, "# written by internal/testbroker\n")
	fmt.Fprintf(&c, "per_listener_settings false\n")
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", b.port)
	fmt.Fprintf(&c, "allow_anonymous false\n")
	fmt.Fprintf(&c, "password_file %s\n", passwd)
	fmt.Fprintf(&c, "acl_file %s\n", acl)
	fmt.Fprintf(&c, "persistence true\n")
	fmt.Fprintf(&c, "persistence_location %s/\n", b.dir)
	// Save on exit only; Restart stops gracefully.
	fmt.Fprintf(&c, "autosave_interval 0\n")
	// Unlimited, so that tests measure the agent and not broker limits.
	fmt.Fprintf(&c, "max_queued_messages 0\n")
	fmt.Fprintf(&c, "max_queued_bytes 0\n")
	fmt.Fprintf(&c, "max_inflight_messages 0\n")
	fmt.Fprintf(&c, "set_tcp_nodelay true\n")
	fmt.Fprintf(&c, "log_dest stderr\n")
	for _, t := range []string{"error", "warning", "notice", "information", "subscribe", "unsubscribe"} {
		fmt.Fprintf(&c, "log_type %s\n", t)
	}
	fmt.Fprintf(&c, "log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S\n")
	if os.Geteuid() == 0 {
		// Run as root mosquitto drops to user "mosquitto", which cannot read the test's
		// temporary directory.
		fmt.Fprintf(&c, "user root\n")
	}

	for _, f := range []struct {
		path string
		data []byte
	}{{passwd, pw.Bytes()}, {acl, []byte(aclText)}, {conf, []byte(c.String())}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return conf, nil
}

// mosquittoPasswordLine returns a password-file line in the format mosquitto_passwd writes
// for mosquitto 2.0: "$7$" (PBKDF2-HMAC-SHA512), iterations, base64 salt, base64 hash.
// Generating it in-process spares one mosquitto_passwd run per device.
func mosquittoPasswordLine(user, password string) (string, error) {
	const iterations = 101
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	hash, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("%s:$7$%d$%s$%s", user, iterations, enc.EncodeToString(salt), enc.EncodeToString(hash)), nil
}

// freePort asks the kernel for a free loopback port. Another process may take it before
// mosquitto binds it; startMosquitto retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
