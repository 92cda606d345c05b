package mosquitto_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/mosquitto"
	"github.com/posagent/posagent/internal/mqtttest"
)

// wait bounds the tests' own waits, as mqtttest bounds its client's.
const wait = mqtttest.Wait

// requireMosquitto skips when the broker is not installed, unless the environment demands
// Mosquitto (as CI does), in which case its absence is a failure.
func requireMosquitto(t *testing.T) {
	t.Helper()
	if _, err := mosquitto.LookPath(); err != nil {
		if os.Getenv("POSAGENT_TEST_BROKER") == "mosquitto" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func devicePassword(id string) string { return "pw-" + id }

// logBuffer collects the broker's log for a failing test.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// start starts a broker for the test and stops it at the end.
func start(t *testing.T, opts mosquitto.Options) *mosquitto.Server {
	t.Helper()
	requireMosquitto(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.TMSPassword == "" {
		opts.TMSPassword = "tms-secret"
	}
	if opts.DevicePassword == nil {
		opts.DevicePassword = devicePassword
	}
	log := &logBuffer{}
	if opts.Log == nil {
		opts.Log = log
	}
	s, err := mosquitto.Start(opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", log.String())
		}
	})
	return s
}

// dial connects as user with that user as client ID, the way a terminal does.
func dial(t *testing.T, url, user, pass string, persistent bool) (*mqtttest.Client, error) {
	t.Helper()
	return mqtttest.Dial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

func mustDial(t *testing.T, url, user, pass string, persistent bool) *mqtttest.Client {
	t.Helper()
	return mqtttest.MustDial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

// TestAccounts: the launcher's accounts and production ACL, and what it reports about itself.
func TestAccounts(t *testing.T) {
	s := start(t, mosquitto.Options{Devices: []string{"dev1", "dev2"}})
	url := s.URL()
	if url != "tcp://"+s.Addr() || s.Port() == 0 || s.PID() == 0 || !s.Running() {
		t.Fatalf("URL %s Addr %s Port %d PID %d Running %v", url, s.Addr(), s.Port(), s.PID(), s.Running())
	}
	if _, err := dial(t, url, "", "", false); err == nil {
		t.Error("anonymous client admitted")
	}
	mqtttest.CheckIsolation(t, mqtttest.Accounts{URL: url, TMSUser: mosquitto.DefaultTMSUser, TMSPass: "tms-secret", DevicePassword: devicePassword})
}

// TestRestartKeepsQueuedMessages: with Persistence, a persistent session's subscription and
// the QoS 1 messages queued for it while it was away survive a graceful restart.
func TestRestartKeepsQueuedMessages(t *testing.T) {
	s := start(t, mosquitto.Options{Devices: []string{"dev1"}, Persistence: true})
	url, pid := s.URL(), s.PID()
	dev := mustDial(t, url, "dev1", devicePassword("dev1"), true)
	dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
	dev.Disconnect(0)

	tms := mustDial(t, url, "tms", "tms-secret", false)
	const n = 5
	for i := range n {
		tms.Send(t, tmsproto.CmdTopic("dev1"), fmt.Sprint(i))
	}
	// Once the TMS's own probe comes back, the broker has routed the commands before it.
	tms.MustSubscribe(t, "tms/v1/probe/#")
	tms.Send(t, "tms/v1/probe/flush", "probe")
	if m := tms.Next(t); string(m.Payload()) != "probe" {
		t.Fatalf("probe: got %q", m.Payload())
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL changed across Restart: %s → %s", url, s.URL())
	}
	if s.PID() == pid || s.PID() == 0 {
		t.Fatalf("PID %d after restart, before %d", s.PID(), pid)
	}
	dev = mustDial(t, url, "dev1", devicePassword("dev1"), true)
	for i := range n {
		if got := string(dev.Next(t).Payload()); got != fmt.Sprint(i) {
			t.Fatalf("message %d after restart: got %q", i, got)
		}
	}
}

func TestKillThenStart(t *testing.T) {
	s := start(t, mosquitto.Options{Devices: []string{"dev1"}})
	url := s.URL()
	lost := make(chan struct{})
	o := paho.NewClientOptions().AddBroker(url).SetClientID("dev1").SetUsername("dev1").
		SetPassword(devicePassword("dev1")).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(wait):
		t.Fatal("the client did not notice the kill")
	}
	if s.Running() || s.PID() != 0 {
		t.Fatalf("after Kill: Running %v PID %d", s.Running(), s.PID())
	}
	if _, err := dial(t, url, "dev1", devicePassword("dev1"), false); err == nil {
		t.Fatal("connected to a killed broker")
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop after Kill: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, mosquitto.ErrRunning) {
		t.Fatalf("Start while running: %v, want ErrRunning", err)
	}
	if s.URL() != url {
		t.Fatalf("URL changed: %s → %s", url, s.URL())
	}
	mustDial(t, url, "dev1", devicePassword("dev1"), false)
}

// TestCrashIsReported: a broker that dies on its own is seen as not running, Stop says so,
// and Start brings it back.
func TestCrashIsReported(t *testing.T) {
	s := start(t, mosquitto.Options{})
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(wait); s.Running(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the crash was not noticed")
		}
	}
	if err := s.Stop(); !errors.Is(err, mosquitto.ErrExited) {
		t.Fatalf("Stop after a crash: %v, want ErrExited", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	mustDial(t, s.URL(), "tms", "tms-secret", false)
}

func TestPortInUse(t *testing.T) {
	requireMosquitto(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = mosquitto.Start(mosquitto.Options{
		Dir: t.TempDir(), TMSPassword: "x", Port: l.Addr().(*net.TCPAddr).Port,
	})
	if !errors.Is(err, mosquitto.ErrPortInUse) {
		t.Fatalf("start on a taken port: %v, want ErrPortInUse", err)
	}
}

func TestMaxConnections(t *testing.T) {
	s := start(t, mosquitto.Options{Devices: []string{"dev1"}, MaxConnections: 1})
	mustDial(t, s.URL(), "tms", "tms-secret", false)
	if _, err := dial(t, s.URL(), "dev1", devicePassword("dev1"), false); err == nil {
		t.Fatal("a second connection was admitted with MaxConnections 1")
	}
}

func TestFixedPortAndExtraConfig(t *testing.T) {
	requireMosquitto(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// A second listener through ExtraConfig, to show the text reaches the broker.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port2 := l2.Addr().(*net.TCPAddr).Port
	l2.Close()
	s := start(t, mosquitto.Options{Port: port, ExtraConfig: "listener " + strconv.Itoa(port2) + " 127.0.0.1"})
	if s.Port() != port {
		t.Fatalf("port %d, want %d", s.Port(), port)
	}
	mustDial(t, "tcp://127.0.0.1:"+strconv.Itoa(port2), "tms", "tms-secret", false)
}

func TestInvalidOptions(t *testing.T) {
	dir := t.TempDir()
	for name, o := range map[string]mosquitto.Options{
		"no dir":             {TMSPassword: "x"},
		"no tms password":    {Dir: dir},
		"no device password": {Dir: dir, TMSPassword: "x", Devices: []string{"dev1"}},
		"bad device id":      {Dir: dir, TMSPassword: "x", Devices: []string{"a/b"}, DevicePassword: devicePassword},
		"duplicate device":   {Dir: dir, TMSPassword: "x", Devices: []string{"d", "d"}, DevicePassword: devicePassword},
		"device is tms":      {Dir: dir, TMSPassword: "x", Devices: []string{"tms"}, DevicePassword: devicePassword},
		"negative port":      {Dir: dir, TMSPassword: "x", Port: -1},
	} {
		if _, err := mosquitto.Start(o); !errors.Is(err, mosquitto.ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
	_, err := mosquitto.Start(mosquitto.Options{Dir: dir, TMSPassword: "x", Bin: "/nonexistent/mosquitto"})
	if !errors.Is(err, mosquitto.ErrNotInstalled) {
		t.Errorf("missing binary: %v, want ErrNotInstalled", err)
	}
}

// TestManyDevices starts a broker with a fleet-sized password file (20 000 accounts; 2 000
// under -short or the race detector, which slows PBKDF2 tenfold) and logs how long Start took
// (measured, not asserted); the first and the last device can log in.
func TestManyDevices(t *testing.T) {
	n := 20000
	if testing.Short() || raceEnabled {
		n = 2000
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("FS-%05d", i)
	}
	begin := time.Now()
	s := start(t, mosquitto.Options{Devices: ids})
	t.Logf("%d accounts: Start took %v (password file, config, broker up)", n, time.Since(begin))
	for _, id := range []string{ids[0], ids[n-1]} {
		c := mustDial(t, s.URL(), id, devicePassword(id), false)
		c.MustSubscribe(t, tmsproto.CmdTopic(id))
	}
	if _, err := dial(t, s.URL(), ids[0], devicePassword(ids[1]), false); err == nil {
		t.Fatal("a device was admitted with another's password")
	}
}
