package tr31

import (
	"bytes"
	"testing"

	"github.com/posagent/posagent/keystore/kcv"
)

// ANSI X9.143:2021 section 8.6: an ECC private key (usage S0, algorithm E)
// under an AES-256 KBPK, with two certificates in extended-length CT
// optional blocks, a KP block carrying the KBPK's CMAC check value, a TS
// time stamp and a PB block. Vector data as reproduced in the openemv/tr31
// test suite (tests/tr31_decrypt_test.c).
const x9143_8_6 = "D1840S0ES00N0400CT000205CC020002F0" +
	"MIICLjCCAdSgAwIBAgIIGDrdWBxuNpAwCgYIKoZIzj0EAwIwMTEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxFjAUBgNVBAMMDVNhbXBsZSBFQ0MgQ0EwHhcNMjAwODE1MDIxMDEwWhcNMjEwODE1MDIxMDEwWjBPMRcwFQYDVQQKDA5BbHBoYSBNZXJjaGFudDEfMB0GA1UECwwWVExTIENsaWVudCBDZXJ0aWZpY2F0ZTETMBEGA1UEAwwKMTIzNDU2Nzg5MDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEI/SLrH6fITA9y6Y3BneuoT/5+EHSepZxCYeSstGll2sVvmSDZWWSbN6lh5Fb/zagrDjjQ/gZtWIOTf2wL1vSGjgbcwgbQwCQYDVR0TBAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFHuvP526vFMywEoVoXZ5aXNfhnfeMB8GA1UdIwQYMBaAFI+ZFhOWF+oMtcfYwg15vH5WmWccMEIGA1UdHwQ7MDkwN6A1oDOGMWh0dHA6Ly9jcmwuYWxwaGEtbWVyY2hhbnQuZXhhbXBsZS9TYW1wbGVFQ0NDQS5jcmwwCgYIKoZIzj0EAwIDSAAwRQIhAPuWWvCTmOdvQzUjCUmTX7H4sX4Ebpw+CI+aOQLu1DqwAiA0eR4FdMtvXV4P6+WMz5B10oea5xtLTfSgoBDoTkvKYQ==" +
	"0002C4" +
	"MIICDjCCAbOgAwIBAgIIfnOsCbsxHjwwCgYIKoZIzj0EAwIwNjEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxGzAZBgNVBAMMElNhbXBsZSBSb290IEVDQyBDQTAeFw0yMDA4MTUwMjEwMDlaFw0zMDA4MTMwMjEwMDlaMDExFzAVBgNVBAoMDkFscGhhIE1lcmNoYW50MRYwFAYDVQQDDA1TYW1wbGUgRUNDIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHCanM9n+Rji+3EROj+HlogmXMU1Fk1td7N3I/8rfFnre1GwWCUqXSePHxwQ9DRHCV3oht3OUU2kDfitfUIujA6OBrzCBrDASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBhjAdBgNVHQ4EFgQUj5kWE5YX6gy1x9jCDXm8flaZZxwwHwYDVR0jBBgwFoAUvElIifFlt6oeUaopV9Y0lJtyPVQwRgYDVR0fBD8wPTA7oDmgN4Y1aHR0cDovL2NybC5hbHBoYS1tZXJjaGFudC5leGFtcGxlL1NhbXBsZVJvb3RFQ0NDQS5jcmwwCgYIKoZIzj0EAwIDSQAwRgIhALT8+DG+++KuqqUGyBQ4YG4s34fqbujclxZTHxYWVVSNAiEAn3v5Xmct7fkLpkjGexiHsy6D90r0K2LlUqpN/069y5s=" +
	"KP10012331550BC9TS1320200818004100ZPB110000000000000" +
	// Encrypted key data
	"8BDD0D63BA2E438AFD9386DDA768D6328C27A02C0009DD6E8EDB52D366DADE4FA1397E6DD7B360F115726BF4563D6DC303107FB63EC5B05F0837F6BD290E5A678AC15162B624CD2669092F9B8993FC492F1BA535EF9E1E55182A4DBE73DABC30945D96B329C04FCB325376D188112E16C8AD1AF5E3F2F234103C785B92FD24AD" +
	// MAC
	"7E816121542513294E0A561F00BE2B53"

func TestX9143ExtendedOptionalBlocks(t *testing.T) {
	kbpk := unhex(t, kbpkD)
	h, key, err := Unwrap(kbpk, x9143_8_6)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if h.Usage != "S0" || h.Algorithm != 'E' || h.ModeOfUse != 'S' || len(h.Optional) != 4 {
		t.Fatalf("header %+v", h)
	}
	ids := ""
	for _, ob := range h.Optional {
		ids += ob.ID
	}
	if ids != "CTKPTSPB" {
		t.Fatalf("optional blocks %s, want CT KP TS PB", ids)
	}
	if got := h.Optional[2].Data; got != "20200818004100Z" {
		t.Fatalf("TS %q", got)
	}
	// The KP block is "01" (CMAC method) and the KBPK's 5-byte check value.
	want, err := kcv.AES(kbpk, 5)
	if err != nil {
		t.Fatal(err)
	}
	if kp := h.Optional[1].Data; kp != "01"+string(appendHex(nil, want)) {
		t.Fatalf("KP %q, KBPK check value %X", kp, want)
	}
	// RFC 5915 ECPrivateKey, 121 bytes: SEQUENCE, version 1, 32-byte key.
	if len(key) != 121 || !bytes.HasPrefix(key, unhex(t, "307702010104202D493257A45B34C11B")) ||
		!bytes.HasSuffix(key, unhex(t, "5620E4DFDB02F5BD21")) {
		t.Fatalf("key %X", key)
	}
	// The CT blocks use the extended length; Wrap writes the same form back.
	_, kd, err := unwrap(kbpk, x9143_8_6)
	if err != nil {
		t.Fatal(err)
	}
	if got := wrapWithPadding(t, kbpk, h, key, kd[2+len(key):]); got != x9143_8_6 {
		t.Fatalf("Wrap did not reproduce X9.143 8.6:\n got %s\nwant %s", got, x9143_8_6)
	}
}
