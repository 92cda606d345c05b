package serial

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.bug.st/serial/enumerator"
)

// ErrAmbiguous is returned when more than one port matches a USB identity.
var ErrAmbiguous = errors.New("serial: several ports match")

// enumerate lists the ports with their USB details; tests replace it.
var enumerate = func() ([]*enumerator.PortDetails, error) { return enumerator.GetDetailedPortsList() }

// findUSB is the device path of the one port whose USB device is id. None is ErrGone (it
// may be plugged in later); several is ErrAmbiguous, because a silent pick could send a PIN
// pad's frames to a printer.
func findUSB(id USBID) (string, error) {
	ports, err := enumerate()
	if err != nil {
		return "", fmt.Errorf("serial: usb %s: enumerating ports: %w", id, err)
	}
	var found []string
	for _, p := range ports {
		if p == nil || !p.IsUSB || !hexIs(p.VID, id.VID) || !hexIs(p.PID, id.PID) {
			continue
		}
		if id.Serial != "" && p.SerialNumber != id.Serial {
			continue
		}
		found = append(found, p.Name)
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return "", &goneError{path: "usb " + id.String(), op: "open", cause: errors.New("no such USB serial device")}
	case 1:
		return found[0], nil
	}
	// A composite device (e.g. two CDC-ACM interfaces) has one serial number for both: the
	// path, or a udev symlink per interface, is the way to choose.
	return "", fmt.Errorf("%w usb %s: %s (set a serial number or use the path)", ErrAmbiguous, id, strings.Join(found, ", "))
}

func hexIs(s string, want uint16) bool {
	v, err := strconv.ParseUint(s, 16, 16)
	return err == nil && uint16(v) == want
}
