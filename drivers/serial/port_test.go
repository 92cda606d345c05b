package serial_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial/enumerator"

	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/drivers/serial/serialtest"
)

// everyByte is 0x00…0xff: control characters, XON/XOFF and NUL must all cross unchanged.
func everyByte() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// exchange checks bytes both ways between the port and the emulator's end.
func exchange(t *testing.T, p io.ReadWriter, emu io.ReadWriter) {
	t.Helper()
	all := everyByte()
	errc := make(chan error, 1)
	go func() { _, err := p.Write(all); errc <- err }()
	got := make([]byte, len(all))
	if _, err := io.ReadFull(emu, got); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("port → device: %v %x", err, got)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { _, err := emu.Write(all); errc <- err }()
	if _, err := io.ReadFull(p, got); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("device → port: %v %x", err, got)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestOpenByPathBytesBothWays(t *testing.T) {
	for _, cfg := range []serial.Config{
		{},
		{Baud: 9600, DataBits: 8, Parity: serial.ParityEven, StopBits: 2},
		{Baud: 19200, Flow: serial.FlowRTSCTS},
	} {
		line, p := serialtest.Open(t, cfg)
		exchange(t, p, line.Emulator())
		if err := p.Drain(); err != nil {
			t.Errorf("drain: %v", err)
		}
		if _, ok := p.(serial.ModemLines); ok {
			t.Error("modem lines offered without Config.Modem")
		}
	}
}

func TestReadTimeoutIsTyped(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{ReadTimeout: 20 * time.Millisecond})
	buf := make([]byte, 4)
	if n, err := p.Read(buf); n != 0 || !errors.Is(err, serial.ErrTimeout) {
		t.Fatalf("Read on a silent line = %d, %v; want ErrTimeout", n, err)
	}
	// io.ReadFull stops at the timeout instead of spinning on (0, nil).
	if _, err := line.Emulator().Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	n, err := io.ReadFull(p, buf)
	if n != 2 || !errors.Is(err, serial.ErrTimeout) || serial.IsGone(err) {
		t.Fatalf("ReadFull of a short reply = %d, %v", n, err)
	}
	// The timeout changes; 0 waits for the byte however late it comes.
	if err := p.SetReadTimeout(0); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = line.Emulator().Write([]byte("z")) }()
	if n, err := p.Read(buf); n != 1 || err != nil || buf[0] != 'z' {
		t.Fatalf("Read without timeout = %d, %v", n, err)
	}
	if err := p.SetReadTimeout(-time.Second); err == nil {
		t.Error("negative timeout accepted")
	}
}

func TestResetInputBufferDropsGarbage(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{ReadTimeout: 20 * time.Millisecond})
	if _, err := line.Emulator().Write([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	// Wait until the garbage is in the port's buffer, then drop the rest.
	one := make([]byte, 1)
	if _, err := io.ReadFull(p, one); err != nil {
		t.Fatal(err)
	}
	if err := p.ResetInputBuffer(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = line.Emulator().Write([]byte("K")) }()
	if err := p.SetReadTimeout(0); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p, one); err != nil || one[0] != 'K' {
		t.Fatalf("after reset read %q, %v", one, err)
	}
}

func TestUnplugIsGoneForGood(t *testing.T) {
	line, p := serialtest.Open(t, serial.Config{})
	readErr := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 1))
		readErr <- err
	}()
	line.Unplug()
	if err := <-readErr; !serial.IsGone(err) {
		t.Fatalf("blocked Read after unplug: %v", err)
	}
	if _, err := p.Write([]byte("x")); !serial.IsGone(err) {
		t.Errorf("Write after unplug: %v", err)
	}
	// The device came back, but this port stays gone: a new open reaches it.
	if err := line.Replug(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("x")); !serial.IsGone(err) {
		t.Errorf("Write on the old port after replug: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close of a gone port: %v", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	for _, flow := range []serial.Flow{serial.FlowNone, serial.FlowXONXOFF} {
		_, p := serialtest.Open(t, serial.Config{Flow: flow})
		readErr := make(chan error, 1)
		go func() {
			_, err := p.Read(make([]byte, 1))
			readErr <- err
		}()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-readErr; !errors.Is(err, serial.ErrClosed) || serial.IsGone(err) {
			t.Errorf("%s: Read interrupted by Close: %v", flow, err)
		}
		if _, err := p.Write([]byte("x")); !errors.Is(err, serial.ErrClosed) {
			t.Errorf("%s: Write after Close: %v", flow, err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := serial.Open(serial.Config{Path: "/dev/x"}); !errors.Is(err, serial.ErrConfig) {
		t.Errorf("invalid config: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	if _, err := serial.Open(serial.Config{Path: missing, Baud: 9600}); !serial.IsGone(err) {
		t.Errorf("missing device: %v", err)
	}
	notTTY := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notTTY, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serial.Open(serial.Config{Path: notTTY, Baud: 9600}); err == nil || serial.IsGone(err) {
		t.Errorf("a plain file is a bad config, not a missing device: %v", err)
	}
}

// Pseudo-terminals have no modem lines: asking for them fails at open, which is why they
// are opt-in.
func TestModemLinesOnlyWhenAsked(t *testing.T) {
	line := serialtest.Line(t)
	cfg := serialtest.Config(line, serial.Config{Modem: &serial.ModemBits{DTR: true, RTS: true}})
	p, err := serial.Open(cfg)
	if err == nil {
		defer p.Close()
		if _, ok := p.(serial.ModemLines); !ok {
			t.Fatal("opened with Config.Modem but no ModemLines")
		}
		t.Log("this kernel's pseudo-terminals accept modem lines")
		return
	}
	if serial.IsGone(err) {
		t.Errorf("refused modem lines reported as a missing device: %v", err)
	}
}

func TestNonStandardBaud(t *testing.T) {
	line := serialtest.Line(t)
	p, err := serial.Open(serialtest.Config(line, serial.Config{Baud: 250000}))
	if err != nil && strings.Contains(err.Error(), "function not implemented") {
		t.Skip("the arbitrary-rate ioctl is not implemented here (qemu-user)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	exchange(t, p, line.Emulator())
}

func TestOpenByUSBIdentity(t *testing.T) {
	line := serialtest.Line(t)
	restore := serial.SetEnumerate([]*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB3", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "OTHER"},
		{Name: line.Path(), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "PP01"},
	})
	defer restore()

	id := &serial.USBID{VID: 0x0403, PID: 0x6001, Serial: "PP01"}
	p, err := serial.Open(serial.Config{USB: id, Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	exchange(t, p, line.Emulator())

	if _, err := serial.Open(serial.Config{USB: &serial.USBID{VID: 0x0403, PID: 0x6001}, Baud: 9600}); !errors.Is(err, serial.ErrAmbiguous) {
		t.Errorf("two devices match: %v", err)
	}
	if _, err := serial.Open(serial.Config{USB: &serial.USBID{VID: 0x1a86, PID: 0x7523}, Baud: 9600}); !serial.IsGone(err) {
		t.Errorf("no device matches: %v", err)
	}
}
