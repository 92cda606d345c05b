package keystore

import (
	"bytes"
	"fmt"
)

// UnionPay sign-in answers carry the new working keys in field 62, each encrypted under the
// active master key (TDES-ECB) and followed by its 4-byte check value (the first bytes of the
// key encrypting eight zero bytes). Three layouts are in use:
//
//	24 bytes: PIK(8) CV(4) MAK(8) CV(4)                  single-length keys
//	40 bytes: PIK(16) CV(4) MAK(16) CV(4)                double-length keys
//	60 bytes: PIK(16) CV(4) MAK(16) CV(4) TDK(16) CV(4)  with the data key
//
// In the double-length layouts a single-DES MAK is sent as its 8 bytes followed by 8 zero
// bytes; it is loaded as the 8-byte key it is.

// ErrSignInKeys: field 62 is not one of the layouts.
var ErrSignInKeys = fmt.Errorf("keystore: sign-in working keys: %w", ErrBadLength)

// SignInKeys splits field 62 of a sign-in answer into the items of a Load (Source "signin",
// KEK -1: the active master key).
func SignInKeys(field62 []byte) ([]Item, error) {
	var keyLen int
	roles := []Role{RolePIK, RoleMAK}
	switch len(field62) {
	case 24:
		keyLen = 8
	case 40:
		keyLen = 16
	case 60:
		keyLen = 16
		roles = append(roles, RoleTDK)
	default:
		return nil, fmt.Errorf("%w: %d bytes (24, 40 or 60)", ErrSignInKeys, len(field62))
	}
	items := make([]Item, 0, len(roles))
	for i, r := range roles {
		off := i * (keyLen + 4)
		enc := bytes.Clone(field62[off : off+keyLen])
		check := bytes.Clone(field62[off+keyLen : off+keyLen+4])
		if r == RoleMAK && keyLen == 16 && allZero(enc[8:]) {
			enc = enc[:8]
		}
		if allZero(enc) {
			return nil, fmt.Errorf("%w: %s is empty", ErrSignInKeys, r)
		}
		items = append(items, Item{Role: r, Encrypted: enc, Check: check})
	}
	return items, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
