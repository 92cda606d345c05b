package hostsim

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Parameter download (0800, 60.3 360) answers field 62 as a list of items, each
//
//	tag   2 ASCII digits
//	len   3 ASCII digits: the value's length in bytes
//	value that many ASCII bytes
//
// in ascending tag order. The host sends these tags (Terminal.Params adds or overrides any):
const (
	ParamMerchantName = "11" // merchant name (Terminal.MerchantName, default "HOSTSIM MERCHANT")
	ParamTimeout      = "12" // answer timeout, seconds ("60")
	ParamRetries      = "13" // reversal / resend attempts ("3")
	ParamTPDU         = "14" // TPDU, 10 hex digits ("6000030000")
	ParamTips         = "15" // tips (settlement adjustment) allowed: "1" / "0" ("1")
	ParamMaxRefund    = "16" // maximum refund amount, 12 digits, minor units ("000000500000")
	ParamOffline      = "17" // offline upload mode: "0" before the next online, "1" at settlement ("0")
	ParamKeyIndex     = "18" // master key index, 2 digits ("01")
)

func (s *Server) paramTLV(tc *Terminal) []byte {
	items := map[string]string{
		ParamMerchantName: "HOSTSIM MERCHANT",
		ParamTimeout:      "60",
		ParamRetries:      "3",
		ParamTPDU:         "6000030000",
		ParamTips:         "1",
		ParamMaxRefund:    "000000500000",
		ParamOffline:      "0",
		ParamKeyIndex:     "01",
	}
	if tc.MerchantName != "" {
		items[ParamMerchantName] = tc.MerchantName
	}
	maps.Copy(items, tc.Params)
	out, err := encodeTLV(items)
	if err != nil {
		s.log.Warn("parameter download", "err", err)
	}
	return out
}

// encodeTLV lays items out in tag order; it stops before an item that would take field 62
// past 512 bytes.
func encodeTLV(items map[string]string) ([]byte, error) {
	var out []byte
	for _, tag := range slices.Sorted(maps.Keys(items)) {
		v := items[tag]
		if len(v) > 999 || len(out)+5+len(v) > 512 {
			return out, fmt.Errorf("parameter %s does not fit in field 62", tag)
		}
		out = fmt.Appendf(out, "%s%03d%s", tag, len(v), v)
	}
	return out, nil
}

// ParseTLV reads a field 62 of the parameter layout into tag → value.
func ParseTLV(b []byte) (map[string]string, error) { return parseTLV(b) }

func parseTLV(b []byte) (map[string]string, error) {
	items := map[string]string{}
	for len(b) > 0 {
		if len(b) < 5 || !isDigits(string(b[:5])) {
			return nil, errors.New("hostsim: parameter TLV: bad tag or length")
		}
		n, _ := strconv.Atoi(string(b[2:5]))
		if len(b) < 5+n {
			return nil, errors.New("hostsim: parameter TLV: value cut")
		}
		items[string(b[:2])] = string(b[5 : 5+n])
		b = b[5+n:]
	}
	if len(items) == 0 {
		return nil, errors.New("hostsim: parameter TLV: empty")
	}
	return items, nil
}
