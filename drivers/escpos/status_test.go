package escpos

import (
	"errors"
	"testing"
)

func TestDecodeStatus(t *testing.T) {
	tests := []struct {
		in    []byte
		want  Status
		err   error
		state string
	}{
		{[]byte{0x12, 0x12, 0x12, 0x12}, Status{Online: true}, nil, "ok"},
		{[]byte{0x12, 0x12, 0x12, 0x1E}, Status{Online: true, PaperNearEnd: true}, nil, "paper-near-end"},
		{[]byte{0x1A, 0x32, 0x12, 0x72}, Status{PaperOut: true}, ErrPaperOut, "paper-out"},
		{[]byte{0x1A, 0x16, 0x12, 0x12}, Status{CoverOpen: true}, ErrCoverOpen, "cover-open"},
		{[]byte{0x1A, 0x52, 0x1A, 0x12}, Status{CutterError: true}, ErrPrinterFault, "error"},
		{[]byte{0x1A, 0x52, 0x12, 0x12}, Status{OtherError: true}, ErrPrinterFault, "error"},
		{[]byte{0x1A, 0x1A, 0x12, 0x12}, Status{FeedButton: true}, ErrOffline, "offline"},
		{[]byte{0x16, 0x12, 0x72, 0x12}, Status{Online: true, DrawerPin3: true, UnrecoverableError: true, AutoRecoverableError: true}, ErrPrinterFault, "error"},
	}
	for _, tt := range tests {
		got, err := DecodeStatus(tt.in)
		if err != nil {
			t.Fatalf("% x: %v", tt.in, err)
		}
		if got != tt.want || !errors.Is(got.Err(), tt.err) && tt.err != nil || tt.err == nil && got.Err() != nil || got.State() != tt.state {
			t.Errorf("% x: %+v (%v, %s), want %+v (%v, %s)", tt.in, got, got.Err(), got.State(), tt.want, tt.err, tt.state)
		}
	}
	for _, bad := range [][]byte{{0x12, 0x12, 0x12}, {0x13, 0x12, 0x12, 0x12}, {0x12, 0x12, 0x12, 0x92}, {0x12, 0x02, 0x12, 0x12}} {
		if _, err := DecodeStatus(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("% x: %v", bad, err)
		}
	}
}

func parseAll(in []byte) []reply {
	var p replyParser
	var out []reply
	for _, b := range in {
		p.feed(b, func(r reply) { out = append(out, r) })
	}
	return out
}

func TestReplyParser(t *testing.T) {
	in := []byte{
		0x13, 0x12, 0x11, // XOFF, status, XON
		0x37, 0x22, '0', '0', '4', '2', 0x00, // process ID 42
		0x37, 0x25, 0x00, // cleared
		0x37, 0x22, '1', '2', 0x12, // broken frame: 4 garbage bytes, then a status
		0xFF,                                       // garbage
		0x37, 0x37, 0x22, '9', '9', '9', '9', 0x00, // header twice: resynchronise on the second
		0x37, 0x22, '1', '2', '3', '4', '5', // too long
	}
	got := parseAll(in)
	want := []reply{
		{kind: replyXOFF}, {kind: replyStatus, b: 0x12}, {kind: replyXON},
		{kind: replyProcessID, id: 42}, {kind: replyCleared},
		{kind: replyGarbage, n: 4}, {kind: replyStatus, b: 0x12},
		{kind: replyGarbage, n: 1},
		{kind: replyGarbage, n: 1}, {kind: replyProcessID, id: 9999},
		{kind: replyGarbage, n: 6}, {kind: replyGarbage, n: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("reply %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// FuzzDecodeStatus: any four bytes either decode to a status that encodes back to the same
// meaningful bits, or are rejected as ErrProtocol.
func FuzzDecodeStatus(f *testing.F) {
	f.Add([]byte{0x12, 0x12, 0x12, 0x12})
	f.Add([]byte{0x1A, 0x32, 0x12, 0x72})
	f.Add([]byte{0x13, 0x11, 0x37, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStatus(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if len(b) != 4 {
			t.Fatalf("%d bytes accepted", len(b))
		}
		if s.Online != (b[0]&0x08 == 0) || s.CoverOpen != (b[1]&0x04 != 0) || s.PaperNearEnd != (b[3]&0x0C != 0) {
			t.Fatalf("% x decoded to %+v", b, s)
		}
		if (s.Err() == nil) != (s.Online && !s.CoverOpen && !s.PaperOut && s.State() != "error") {
			t.Fatalf("%+v: Err %v", s, s.Err())
		}
	})
}

// FuzzReplies: the reply parser takes any byte stream without panicking, accounts for every
// byte exactly once, and reports process IDs only from well-formed frames.
func FuzzReplies(f *testing.F) {
	f.Add([]byte{0x13, 0x12, 0x11, 0x37, 0x22, '0', '0', '4', '2', 0x00, 0x37, 0x25, 0x00})
	f.Add([]byte{0x37, 0x22, '1', '2', 0x12, 0xFF, 0x37, 0x37, 0x22, '9', '9', '9', '9', 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		var p replyParser
		bytes := 0
		for _, b := range in {
			p.feed(b, func(r reply) {
				switch r.kind {
				case replyGarbage:
					if r.n < 1 || r.n > 7 {
						t.Fatalf("garbage of %d bytes", r.n)
					}
					bytes += r.n
				case replyProcessID:
					if r.id < 0 || r.id > 9999 {
						t.Fatalf("process id %d", r.id)
					}
					bytes += 7
				case replyCleared:
					bytes += 3
				default:
					bytes++
				}
			})
		}
		if bytes+p.n != len(in) {
			t.Fatalf("%d bytes in, %d accounted for, %d held", len(in), bytes, p.n)
		}
	})
}
