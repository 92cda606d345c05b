package main

import (
	"encoding/json"
	"testing"
)

// FuzzWorkerLines feeds arbitrary protocol lines to both ends: a worker's request decoder
// and the parent's response decoding. Neither may panic; an accepted request has an id and
// an op.
func FuzzWorkerLines(f *testing.F) {
	f.Add([]byte(`{"id":1,"op":"snapshot","full":true}`))
	f.Add([]byte(`{"id":2,"op":"partition","share":0.2,"mode":2}`))
	f.Add([]byte(`{"id":3,"err":"x","terminals":[{"id":"FS-00001","lastSeq":{"event":3}}]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if req, err := decodeRequest(line); err == nil && (req.ID == 0 || req.Op == "") {
			t.Fatalf("accepted %q as %+v", line, req)
		}
		var resp response
		_ = json.Unmarshal(line, &resp)
	})
}

// FuzzProcFiles feeds arbitrary text to the /proc status and stat parsers: never a panic,
// never a negative figure.
func FuzzProcFiles(f *testing.F) {
	f.Add([]byte("VmHWM:\t 2048 kB\nVmRSS:\t 1024 kB\n"))
	f.Add([]byte("1 (a) b) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if rss, hwm := parseStatus(data); rss < 0 || hwm < 0 {
			t.Fatalf("status %q: %d %d", data, rss, hwm)
		}
		if u, s := parseStat(data); u < 0 || s < 0 {
			t.Fatalf("stat %q: %v %v", data, u, s)
		}
	})
}
