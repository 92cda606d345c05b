// Package iso8583 is the UnionPay POS direct-connect profile of ISO 8583 (Q/CUP 007 style, see
// ../shared/spec/host-iso8583.md): the typed message, the field formats, the frame (length,
// TPDU, 6-byte header), the MAC block, and a client that carries frames to the acquirer host.
// The agent's payment engine and the host simulator (cmd/hostsim) share it.
//
// # Codec choice
//
// The codec is our own, not github.com/moov-io/iso8583 (v0.26.1 was read and measured). Its
// built-ins cover left-aligned BCD and BCD length prefixes, but this profile needed custom
// pieces for most of what matters: track data with the D nibble, pad nibbles that must be 0,
// odd fixed fields aligned per field (22 left, 23 right), strict digit checks, the primary
// bitmap only, field 60/61 subfields, the MAC block; moov would then only walk the bitmap,
// through a map of fields, reflection and a mutex per message. Cost measured on
// cmd/posagent (linux/arm64, CGO_ENABLED=0, -ldflags '-s -w' -trimpath, package linked in
// through a build overlay): 8,716,450 bytes without; +327,680 with a minimal moov spec (codec
// only); +65,536 with this package (codec and client). go.mod is unchanged.
//
// # Frame
//
//	len    2 bytes, big-endian: the number of bytes that follow (at most MaxFrame)
//	TPDU   5 bytes: 60, destination (2), source (2)            Header.TPDU
//	app    6 bytes: 60, 31, terminal state<<4 | processing      Header.App
//	       requirement, 3 reserved
//	MTI    2 bytes BCD
//	bitmap 8 bytes, primary only (bit 1 set is malformed)
//	fields in bit order; field 64 (8 bytes) last
//
// The MAC block is the bytes from the MTI through the end of field 63, bitmap included with
// bit 64 set.
//
// # Field formats
//
// BCD is two digits a byte, high nibble first. Length prefixes are BCD: LL one byte (00–99),
// LLL two bytes (0000–0999). They count digits for n and z fields, bytes for an, ans and b.
//
//	format        fields                      bytes
//	n fixed       3 4 11 12 13 14 15 25 26 53 k/2 (k even): amount 12345 is 00 00 00 01 23 45
//	n3 left       22                          2: left-aligned, "051" is 05 10
//	n3 right      23                          2: right-aligned, "001" is 00 01
//	n..LL         2 32                        LL digits + BCD left-aligned, odd count padded with a 0 nibble
//	                                          (PAN 6225881234567890123 is 19 62 25 88 12 34 56 78 90 12 30)
//	n..LLL        48 60 61                    LLL digits + BCD left-aligned, 0 nibble pad
//	z..LL / LLL   35 / 36                     LL/LLL characters (separator counted) + BCD left-aligned,
//	                                          '=' as the nibble D, 0 nibble pad (…7890=2512101 is 24 …78 90 D2 51 21 01)
//	an/ans fixed  37 38 39 41 42 49           k bytes, exactly
//	an/ans..LL    44                          LL bytes + bytes
//	an/ans..LLL   54 63                       LLL bytes + bytes
//	b fixed       52 64                       8 bytes
//	b..LLL        55 62                       LLL bytes + bytes (0003 9F 26 01)
//
// an and ans values may hold any byte but control characters (00–1F, 7F): field 63 of an
// answer may carry GB2312 text. Field 60 is 60.1 n2 + 60.2 n6 + 60.3 n3 + the rest (its digit
// count must end on a subfield: 2, 8 or 11–17); field 61 is 61.1 n6 + 61.2 n6 + 61.3 n4 + the
// rest (6, 12 or 16–29). Field 11 000000 is malformed (the trace number runs 000001–999999).
// Variable text and digit fields of length 0 are malformed; a b..LLL field may be empty.
// Received frames are checked as strictly as sent ones are built, so whatever Unpack accepts,
// Pack rebuilds byte for byte.
//
// # Client
//
// Client.Exchange carries one request and its answer over a fresh TCP (or TLS) connection; see
// its documentation for the connect rounds and the typed errors (ErrConnect: nothing sent;
// ErrNoAnswer and ErrLink: sent, the payment engine reverses).
//
// Nothing secret goes into errors or logs: errors name the field and the fault, never the
// value; the client logs addresses, sizes and durations only.
package iso8583

// Msg is one message of the profile, field by field. Absent fields are zero values; a field
// is packed when it is set (non-empty string, non-nil slice, Set flag for numbers that may be
// zero). Field numbers are in the comments.
type Msg struct {
	MTI string // "0200", "0210", …

	PAN        string // 2   n..19 LLVAR, BCD, left-aligned (odd lengths padded on the right)
	ProcCode   string // 3   n6
	Amount     int64  // 4   n12, minor units
	HasAmount  bool   //     field 4 present (an amount of 0 is legal in some messages)
	STAN       int    // 11  n6, 1..999999; 0 = absent
	LocalTime  string // 12  n6 hhmmss
	LocalDate  string // 13  n4 MMDD
	Expiry     string // 14  n4 YYMM
	SettleDate string // 15  n4 MMDD
	EntryMode  string // 22  n3
	CardSeq    string // 23  n3
	CondCode   string // 25  n2
	PINCapture string // 26  n2
	AcqInst    string // 32  n..11 LLVAR
	Track2     string // 35  z..37 LLVAR ('=' as the separator; packed as BCD with D)
	Track3     string // 36  z..104 LLLVAR
	RRN        string // 37  an12
	AuthCode   string // 38  an6
	RespCode   string // 39  an2
	TID        string // 41  ans8
	MID        string // 42  ans15
	AddResp    string // 44  an..25 LLVAR
	AddData    string // 48  n..322 LLLVAR (settlement totals: see Totals)
	Currency   string // 49  an3
	PINBlock   []byte // 52  b64 (8 bytes)
	SecCtrl    string // 53  n16
	Balance    string // 54  an..20 LLLVAR
	ICC        []byte // 55  b..255 LLLVAR
	F60        F60    // 60  n..17 LLLVAR
	F61        F61    // 61  n..29 LLLVAR
	F62        []byte // 62  b..512 LLLVAR
	F63        string // 63  ans..163 LLLVAR (request: operator number an3; answer: card organisation an3 …)
	MAC        []byte // 64  b64 (8 bytes); set by Pack when a MAC function is given
}

// F60 is field 60, the "self-defined domain" of the profile.
type F60 struct {
	Type    string // 60.1 n2 message type code ("22" purchase, "00" sign-in …); "" = field absent
	Batch   string // 60.2 n6
	NetCode string // 60.3 n3 network management code ("001" sign-in single-length keys, "003" double, "004" double + TDK, "201" settlement …)
	Rest    string // 60.4… digits that follow (terminal capability, IC condition, …), as they are
}

// F61 is field 61, the original transaction of a void, refund, reversal or completion.
type F61 struct {
	Batch string // 61.1 n6; "" = field absent
	Trace string // 61.2 n6
	Date  string // 61.3 n4 MMDD
	Rest  string // 61.4… (authorisation method, authorisation institution, …)
}

// Header is what precedes the MTI in a frame: the 5-byte TPDU and the 6-byte application
// header. Its bytes are BCD as the profile says.
type Header struct {
	TPDU [5]byte // 60 + destination (2) + source (2)
	// App is the application header: 60 (app type), 31 (version), terminal state (0 normal,
	// 1 test … in the high nibble of byte 2), processing requirement, 2 reserved bytes.
	App [6]byte
}

// Totals is field 48 of a settlement (0500): domestic and foreign debit and credit totals and
// their settlement results, as the seed defines them (debit = purchase + completion + offline
// settlement + adjustment; credit = refund + purchase void + completion void).
type Totals struct {
	DomDebitCount, DomCreditCount int   // n3 each
	DomDebit, DomCredit           int64 // n12 each, minor units
	DomResult                     int   // n1: 0 not settled, 1 balanced, 2 unbalanced, 3 error
	ForDebitCount, ForCreditCount int
	ForDebit, ForCredit           int64
	ForResult                     int
}
