// Package mosquitto runs an Eclipse Mosquitto broker as a child process with the production
// access rules: password accounts for the TMS (all of tms/v1/) and for each terminal (only
// tms/v1/{its id}/), optional persistence, unlimited queues. It serves integration tests
// (through internal/testbroker) and the fleet simulator, so it does not depend on package
// testing: every failure is an error.
//
// A Server keeps its directory and port across Stop/Kill and Start, so clients reconnect to
// the same URL, and (with Persistence) persistent sessions and their queued QoS 1 messages
// survive a graceful Stop.
package mosquitto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/syncio"
)

// Errors callers can test with errors.Is.
var (
	// ErrNotInstalled: no mosquitto binary was found.
	ErrNotInstalled = errors.New("mosquitto: not installed")
	// ErrInvalidOptions: Options are incomplete or contradictory.
	ErrInvalidOptions = errors.New("mosquitto: invalid options")
	// ErrRunning: Start on a server whose broker is running.
	ErrRunning = errors.New("mosquitto: already running")
	// ErrExited: the broker process ended on its own (a start-up failure or a crash).
	ErrExited = errors.New("mosquitto: exited")
	// ErrPortInUse: the broker could not bind its port.
	ErrPortInUse = errors.New("mosquitto: port in use")
	// ErrTimeout: the broker did not accept connections, or did not stop, in time.
	ErrTimeout = errors.New("mosquitto: timed out")
)

// DefaultTMSUser is the TMS account's name when Options.TMSUser is empty.
const DefaultTMSUser = "tms"

// defaultTimeout bounds start-up and a graceful stop. A broker with tens of thousands of
// persistent sessions needs a while to save them on SIGTERM.
const defaultTimeout = 30 * time.Second

// portAttempts is how often a first Start tries another port when the chosen one was taken
// between choosing and binding.
const portAttempts = 5

// Options configure a Server.
type Options struct {
	// Bin is the mosquitto binary; "" looks up "mosquitto" in PATH, then /usr/sbin/mosquitto.
	Bin string
	// Dir holds the configuration, the password and ACL files and the persistence file.
	// Required; the caller owns it (it is neither created empty nor removed).
	Dir string
	// Host is the listen address, default "127.0.0.1".
	Host string
	// Port is the listen port; 0 picks a free one on the first Start and keeps it.
	Port int
	// TMSUser (default DefaultTMSUser) and TMSPassword are the account that sees tms/v1/#.
	// TMSPassword is required.
	TMSUser, TMSPassword string
	// Devices get an account each (username = device id, valid per tmsproto.ValidDeviceID)
	// that sees only its own tms/v1/{id}/#.
	Devices []string
	// DevicePassword gives each device's password; required when Devices is non-empty.
	DevicePassword func(id string) string
	// Persistence keeps sessions, subscriptions and queued QoS 1 messages across a graceful
	// Stop (saved on exit only; a Kill loses what changed since the last graceful stop).
	Persistence bool
	// MaxConnections limits the listener's clients; 0 = unlimited. Mind that the broker
	// inherits this process's open-files limit, which bounds connections too.
	MaxConnections int
	// Log receives the broker's log (stderr); nil discards it, and then only errors and
	// warnings are logged at all, so that a large fleet does not pay for a log nobody reads.
	Log io.Writer
	// ExtraConfig is appended verbatim to mosquitto.conf.
	ExtraConfig string
	// Timeout bounds start-up (until the port accepts connections) and a graceful stop;
	// default 30 s.
	Timeout time.Duration
}

// Server is a Mosquitto broker that can be stopped, killed and started again on the same
// port. Its methods are safe for concurrent use.
type Server struct {
	opts Options // defaults applied
	bin  string
	conf string
	tail *syncio.Tail // recent stderr, for error messages

	mu   sync.Mutex
	port int
	proc *process
}

// process is one run of the broker binary.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// LookPath finds the mosquitto binary: "mosquitto" on PATH, else Debian's /usr/sbin/mosquitto
// (/usr/sbin is not on every user's PATH).
func LookPath() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/mosquitto"
	if st, err := os.Stat(debian); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", fmt.Errorf("%w: not on PATH or in /usr/sbin (apt-get install mosquitto)", ErrNotInstalled)
}

// Start writes the broker's files into opts.Dir and starts it. It returns once the port
// accepts connections.
func Start(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.TMSUser == "" {
		opts.TMSUser = DefaultTMSUser
	}
	if opts.TMSPassword == "" {
		return nil, fmt.Errorf("%w: TMSPassword is required", ErrInvalidOptions)
	}
	if len(opts.Devices) > 0 && opts.DevicePassword == nil {
		return nil, fmt.Errorf("%w: DevicePassword is required with Devices", ErrInvalidOptions)
	}
	if opts.Port < 0 || opts.Port > 65535 || opts.MaxConnections < 0 {
		return nil, fmt.Errorf("%w: port %d, max connections %d", ErrInvalidOptions, opts.Port, opts.MaxConnections)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if err := validUser(opts.TMSUser); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(opts.Devices)+1)
	seen[opts.TMSUser] = struct{}{}
	for _, id := range opts.Devices {
		if err := tmsproto.ValidDeviceID(id); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		if _, dup := seen[id]; dup {
			return nil, fmt.Errorf("%w: account %q given twice", ErrInvalidOptions, id)
		}
		seen[id] = struct{}{}
	}
	bin := opts.Bin
	if bin == "" {
		var err error
		if bin, err = LookPath(); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	s := &Server{
		opts: opts,
		bin:  bin,
		conf: filepath.Join(opts.Dir, "mosquitto.conf"),
		tail: &syncio.Tail{Max: 8 << 10},
		port: opts.Port,
	}
	if err := s.writeAccounts(); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the broker's host:port (loopback when it listens on every address).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrLocked()
}

func (s *Server) addrLocked() string {
	host := s.opts.Host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(s.port))
}

// URL is "tcp://host:port"; it stays the same across Stop and Start.
func (s *Server) URL() string { return "tcp://" + s.Addr() }

// Port is the listen port (0 before the first successful Start with Options.Port 0).
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir is Options.Dir.
func (s *Server) Dir() string { return s.opts.Dir }

// TMSUser is the TMS account's username.
func (s *Server) TMSUser() string { return s.opts.TMSUser }

// PID is the broker process's id, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the broker process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Start starts the broker again after Stop or Kill (or after it crashed), on the same port
// with the same accounts and persistence. It returns once the port accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if !s.proc.exited() {
			return ErrRunning
		}
		s.proc = nil // crashed; reaped by its wait goroutine
	}
	if s.port != 0 {
		return s.run()
	}
	// First start on a port of our choosing: another process may take it between choosing
	// and binding, so choose again then.
	var err error
	for range portAttempts {
		if s.port, err = freePort(s.opts.Host); err != nil {
			s.port = 0
			return err
		}
		if err = s.run(); !errors.Is(err, ErrPortInUse) {
			break
		}
	}
	if err != nil {
		s.port = 0
	}
	return err
}

// run writes the configuration for s.port and starts the binary. s.mu is held.
func (s *Server) run() error {
	if err := s.writeConfig(); err != nil {
		return err
	}
	s.tail.Reset()
	out := io.Writer(s.tail)
	if s.opts.Log != nil {
		out = io.MultiWriter(s.tail, s.opts.Log)
	}
	cmd := exec.Command(s.bin, "-c", s.conf)
	cmd.Stdout = out
	cmd.Stderr = out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mosquitto: exec %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := s.waitListening(p); err != nil {
		_ = p.kill()
		return err
	}
	s.proc = p
	return nil
}

// waitListening returns once the broker accepts TCP connections, or with an error once it
// has exited or the timeout has passed.
func (s *Server) waitListening(p *process) error {
	addr := s.addrLocked()
	deadline := time.Now().Add(s.opts.Timeout)
	for {
		select {
		case <-p.done:
			tail := lastLines(s.tail.String(), 10)
			if strings.Contains(tail, "in use") {
				return fmt.Errorf("%w: %s; log tail:\n%s", ErrPortInUse, addr, tail)
			}
			return fmt.Errorf("%w during start-up (%v); log tail:\n%s", ErrExited, p.waitErr, tail)
		default:
		}
		var err error
		if canCheckListening {
			if listening(p.cmd.Process.Pid, s.port) {
				return nil
			}
			err = errors.New("no listening socket")
		} else {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				_ = c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: not listening on %s after %v (%v); log tail:\n%s",
				ErrTimeout, addr, s.opts.Timeout, err, lastLines(s.tail.String(), 10))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the broker gracefully: SIGTERM, on which Mosquitto disconnects its clients,
// saves its persistence file and exits. Stop on a stopped server does nothing; if the broker
// had died on its own, Stop reports ErrExited. Either way the server is stopped afterwards.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.take("Stop")
	if p == nil || err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("mosquitto: signal: %w", err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("%w with %v after SIGTERM", ErrExited, p.waitErr)
		}
		return nil
	case <-time.After(s.opts.Timeout):
		_ = p.kill()
		return fmt.Errorf("%w: ignored SIGTERM for %v and was killed", ErrTimeout, s.opts.Timeout)
	}
}

// Kill ends the broker with SIGKILL, as a crash would: clients see their connections reset
// and nothing is saved. Kill on a stopped server does nothing; if the broker had died on its
// own, Kill reports ErrExited.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.take("Kill")
	if p == nil || err != nil {
		return err
	}
	return p.kill()
}

// take detaches the running broker process from s (which is stopped afterwards, whatever
// the caller does with it): nil when there was none, ErrExited when it had died on its own
// before op. s.mu must be held.
func (s *Server) take(op string) (*process, error) {
	p := s.proc
	if p == nil {
		return nil, nil
	}
	s.proc = nil
	if p.exited() {
		return nil, fmt.Errorf("%w before %s: %v", ErrExited, op, p.waitErr)
	}
	return p, nil
}

// Restart is Stop then Start. If Stop fails the server stays stopped and Restart returns
// that error; Start may be called after it.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be reaped.
func (p *process) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("mosquitto: kill: %w", err)
	}
	<-p.done
	return nil
}

// freePort finds a free port on host, preferring one below the kernel's ephemeral range: a
// port from that range may be handed to a client's outgoing connection while the broker is
// down (a reconnect storm dials thousands), and the broker could not bind it again.
func freePort(host string) (int, error) {
	if lo := ephemeralLow(); lo > 10000 {
		// Spread over the range so that concurrent test processes rarely collide; collisions
		// are caught by the probe or by the broker's bind (then Start picks again).
		base := 10000 + int(time.Now().UnixNano()%int64(lo-10000))
		for i := range 64 {
			port := 10000 + (base-10000+i*7919)%(lo-10000)
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err == nil {
				_ = l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("mosquitto: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of Linux's ephemeral range, 0 if unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
