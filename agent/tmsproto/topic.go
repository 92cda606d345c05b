package tmsproto

import (
	"fmt"
	"regexp"
	"strings"
)

// TopicRoot is the prefix under which every topic of a device lives.
const TopicRoot = "tms/v1/"

// Streams and their topics (relative to the device root). The stream name is the topic suffix
// after "up/", so a record's topic is derived from its stream and never stored twice.
const (
	StreamOnline   = "online"
	StreamAck      = "ack"
	StreamStats    = "stats"
	StreamEvent    = "event"
	StreamLogECR   = "log/ecr"
	StreamLogPOS   = "log/pos"
	StreamLogAudit = "log/audit"
	StreamLogAgent = "log/agent"
	StreamReceipt  = "receipt"
	StreamReq      = "req"
)

var deviceIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidDeviceID reports whether id is a valid deviceId (the terminal serial number).
func ValidDeviceID(id string) error {
	if !deviceIDRe.MatchString(id) {
		return fmt.Errorf("device id %q: must match [A-Za-z0-9_-]{1,64}", id)
	}
	return nil
}

// UpTopic is the topic of an uplink stream of a device.
func UpTopic(deviceID, stream string) string { return TopicRoot + deviceID + "/up/" + stream }

// CmdTopic is the downlink command topic of a device.
func CmdTopic(deviceID string) string { return TopicRoot + deviceID + "/down/cmd" }

// ParseUpTopic splits an uplink topic into device id and stream.
func ParseUpTopic(topic string) (deviceID, stream string, ok bool) {
	rest, ok := strings.CutPrefix(topic, TopicRoot)
	if !ok {
		return "", "", false
	}
	deviceID, stream, ok = strings.Cut(rest, "/up/")
	if !ok || ValidDeviceID(deviceID) != nil || stream == "" {
		return "", "", false
	}
	return deviceID, stream, true
}

// BlobUpTopic is the topic on which a device asks for the blocks of transfer tid (ota/blob).
func BlobUpTopic(deviceID, tid string) string { return TopicRoot + deviceID + "/up/blob/" + tid }

// BlobDownTopic is the topic on which the TMS answers a device's blob requests; tid "+"
// makes the filter that covers every transfer.
func BlobDownTopic(deviceID, tid string) string { return TopicRoot + deviceID + "/down/blob/" + tid }

// ParseBlobTopic splits a blob topic of either direction into device id and transfer id; up
// says it is a request topic. Transfer ids follow the rule of device ids.
func ParseBlobTopic(topic string) (deviceID, tid string, up, ok bool) {
	rest, ok := strings.CutPrefix(topic, TopicRoot)
	if !ok {
		return "", "", false, false
	}
	deviceID, rest, ok = strings.Cut(rest, "/")
	if !ok || ValidDeviceID(deviceID) != nil {
		return "", "", false, false
	}
	switch {
	case strings.HasPrefix(rest, "up/blob/"):
		tid, up = rest[len("up/blob/"):], true
	case strings.HasPrefix(rest, "down/blob/"):
		tid = rest[len("down/blob/"):]
	default:
		return "", "", false, false
	}
	if !deviceIDRe.MatchString(tid) {
		return "", "", false, false
	}
	return deviceID, tid, up, true
}
