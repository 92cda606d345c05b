package serial

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config says which port to open and how to set its line.
//
// Exactly one of Path and USB names the port. Zero values mean the usual line: 8 data bits,
// no parity, one stop bit, no flow control, reads that wait forever. Baud has no default:
// a wrong guess looks like a dead device.
type Config struct {
	// Path is the device file, e.g. /dev/ttyS1 or a stable udev symlink.
	Path string `toml:"path"`
	// USB finds the port by the identity of its USB device instead, so it survives being
	// renumbered (ttyUSB0 becoming ttyUSB1 after a replug).
	USB *USBID `toml:"usb"`

	Baud     int    `toml:"baud"`
	DataBits int    `toml:"data_bits"` // 5–8, 0 means 8
	Parity   Parity `toml:"parity"`
	StopBits int    `toml:"stop_bits"` // 1 or 2, 0 means 1
	Flow     Flow   `toml:"flow"`
	// ReadTimeout bounds each Read; 0 waits forever. Drivers usually set their own.
	ReadTimeout time.Duration `toml:"read_timeout"`
	// WriteTimeout bounds how long a Write waits for XON after the device sent XOFF (Flow
	// xonxoff only); 0 waits until XON, Close or the device going away.
	WriteTimeout time.Duration `toml:"write_timeout"`

	// Modem asks for the modem control lines: the port is opened with DTR and RTS set as
	// given and implements ModemLines. Leave it nil for devices without them, and always
	// for pseudo-terminals, which refuse the request.
	Modem *ModemBits `toml:"modem"`
}

// ModemBits are the initial levels of the output modem lines.
type ModemBits struct {
	DTR bool `toml:"dtr"`
	RTS bool `toml:"rts"`
}

// USBID identifies a USB serial device. Serial (the USB iSerial string) tells apart two
// devices of the same model; leave it empty when there is only one.
type USBID struct {
	VID    uint16 `toml:"vid"`
	PID    uint16 `toml:"pid"`
	Serial string `toml:"serial"`
}

func (u USBID) String() string {
	s := fmt.Sprintf("%04x:%04x", u.VID, u.PID)
	if u.Serial != "" {
		s += " serial " + strconv.Quote(u.Serial)
	}
	return s
}

// ParseUSBID reads "vvvv:pppp" or "vvvv:pppp:serial" (hexadecimal ids, as lsusb prints them).
func ParseUSBID(s string) (USBID, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return USBID{}, fmt.Errorf("serial: usb id %q: want vid:pid[:serial]", s)
	}
	var id USBID
	for i, dst := range []*uint16{&id.VID, &id.PID} {
		v, err := strconv.ParseUint(parts[i], 16, 16)
		if err != nil || len(parts[i]) != 4 {
			return USBID{}, fmt.Errorf("serial: usb id %q: %q is not 4 hex digits", s, parts[i])
		}
		*dst = uint16(v)
	}
	if len(parts) == 3 {
		id.Serial = parts[2]
	}
	return id, id.validate()
}

func (u USBID) validate() error {
	if u.VID == 0 {
		return errors.New("usb vid 0000 is not a device")
	}
	if len(u.Serial) > 126 || strings.ContainsFunc(u.Serial, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("usb serial: at most 126 printable characters")
	}
	return nil
}

// Parity of each character.
type Parity string

// Parities. The empty string is None.
const (
	ParityNone Parity = "none"
	ParityEven Parity = "even"
	ParityOdd  Parity = "odd"
)

// Flow control.
type Flow string

// Flow controls. The empty string is None.
//
// FlowRTSCTS is done by the UART (the kernel's CRTSCTS). FlowXONXOFF is done in software by
// this package: a goroutine reads the port all the time so an XOFF from the device is seen
// while a long Write is under way, and Write sends in small drained chunks, pausing while
// the device says XOFF. The price: bytes 0x11 (XON) and 0x13 (XOFF) never reach the driver,
// so use it only with devices whose replies cannot contain them — ESC/POS real-time status
// bytes qualify (bit 0 is always 0, and both 0x11 and 0x13 have it set), binary frames with
// checksums or key material do not. The input side is not flow-controlled: the port never
// sends XOFF, and buffers up to 64 KiB that the driver has not read yet.
const (
	FlowNone    Flow = "none"
	FlowRTSCTS  Flow = "rtscts"
	FlowXONXOFF Flow = "xonxoff"
)

// Baud rates accepted. Rates outside the standard table are set with the kernel's
// arbitrary-rate call, which some drivers (and qemu-user) do not implement.
const (
	MinBaud = 50
	MaxBaud = 4_000_000
)

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	switch {
	case c.Path == "" && c.USB == nil:
		add("no port: set path or usb")
	case c.Path != "" && c.USB != nil:
		add("both path and usb set: choose one")
	case c.Path != "" && (!filepath.IsAbs(c.Path) || filepath.Clean(c.Path) != c.Path):
		add("path %q: must be absolute and clean", c.Path)
	case c.USB != nil:
		if err := c.USB.validate(); err != nil {
			add("%s", err)
		}
	}
	if c.Baud < MinBaud || c.Baud > MaxBaud {
		add("baud %d: not in %d–%d", c.Baud, MinBaud, MaxBaud)
	}
	if c.DataBits != 0 && (c.DataBits < 5 || c.DataBits > 8) {
		add("data bits %d: not 5–8", c.DataBits)
	}
	switch c.Parity {
	case "", ParityNone, ParityEven, ParityOdd:
	default:
		add("parity %q: not none, even or odd", c.Parity)
	}
	if c.StopBits < 0 || c.StopBits > 2 {
		add("stop bits %d: not 1 or 2", c.StopBits)
	}
	switch c.Flow {
	case "", FlowNone, FlowRTSCTS, FlowXONXOFF:
	default:
		add("flow %q: not none, rtscts or xonxoff", c.Flow)
	}
	if c.Flow == FlowXONXOFF && c.dataBits() < 8 {
		// 7-bit lines could carry them, but nothing this agent drives uses that.
		add("flow xonxoff needs 8 data bits")
	}
	if c.ReadTimeout < 0 {
		add("read timeout %v: negative", c.ReadTimeout)
	}
	if c.WriteTimeout < 0 {
		add("write timeout %v: negative", c.WriteTimeout)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
}

func (c Config) dataBits() int {
	if c.DataBits == 0 {
		return 8
	}
	return c.DataBits
}

// name is how errors refer to the port.
func (c Config) name() string {
	if c.Path != "" {
		return c.Path
	}
	if c.USB != nil {
		return "usb " + c.USB.String()
	}
	return "(no port)"
}
