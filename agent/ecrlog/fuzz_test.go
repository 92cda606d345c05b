package ecrlog

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/logging"
)

// seedToken looks like a token in the seeds; the tokens the target checks are random, so
// that the fuzzed input cannot contain them and any appearance in the file is a leak.
const seedToken = "tokSECRET42"

// Whatever a cash register sends and whatever the server answers, the exchange is logged as
// one JSON line that reads back with its time, with no card number (13–19 digits passing
// Luhn, in the raw line or in any decoded string) and no token.
func FuzzRecord(f *testing.F) {
	f.Add([]byte("amount=100&owncheque=true"), []byte(`{"statusCode":0,"data":{"processId":"p-1","status":"wait"}}`))
	f.Add([]byte("pan="+pan16), []byte(`{"statusCode":0,"data":{"chequeInfo":{"cardMask":"`+pan16+`"},"n":`+pan19+`}}`))
	f.Add([]byte("name=till&refreshToken="+seedToken), []byte(`{"statusCode":0,"data":{"accessToken":"`+seedToken+`"}}`))
	f.Add([]byte("x=%00"+pan13), []byte(`["\u0036\u0032`+pan16[2:]+`"]`))
	f.Add([]byte("a=1"), []byte(strings.Repeat("1", MaxResponse-8)+pan16+"999"))
	f.Fuzz(func(t *testing.T, rawQuery, resp []byte) {
		l, err := Open(filepath.Join(t.TempDir(), "ecr.log"), 1<<20, 1, Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		secretToken := "tok" + hex.EncodeToString(rnd[:])

		parsed, _ := url.ParseQuery(string(rawQuery)) // a partial parse is fine
		// The same bytes as one raw key and value, not unescaped: what a lenient server might pass.
		k, v, _ := bytes.Cut(rawQuery, []byte("="))
		rawValues := url.Values{string(k): {string(v)}, "accessToken": {secretToken}, "refreshToken": {secretToken}}
		envelope, err := json.Marshal(map[string]any{"statusCode": 0, "data": map[string]any{
			"accessToken": secretToken, "refreshToken": secretToken, "message": string(resp), "query": string(rawQuery)}})
		if err != nil {
			t.Fatal(err)
		}
		l.Record(Entry{Method: "GET", Path: "/v2/" + string(k), Query: parsed, HTTP: 200, Response: resp, ProcessID: string(v)})
		l.Record(Entry{Method: "GET", Path: "/v2/revoke", Query: rawValues, HTTP: 200, Response: envelope, ECR: string(v)})

		n := 0
		err = l.ReadRange(time.Time{}, time.Time{}, func(line []byte) error {
			n++
			if _, ok := logging.LineTime(line); !ok {
				t.Fatalf("line without a readable time: %q", line)
			}
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.UseNumber()
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("line is not a JSON object: %v\n%q", err, line)
			}
			for _, s := range append(jsonTexts(m, nil), string(line)) {
				var pans []string
				for _, p := range cardNumbers(s) {
					// A process id the terminal made is kept as it is (processIDText).
					isID := processIDText(p) == p && (p == string(v) || p == parsed.Get("processId") ||
						bytes.Contains(resp, []byte(`"processId":"`+p+`"`)) || bytes.Contains(resp, []byte(`"processId": "`+p+`"`)))
					if !isID {
						pans = append(pans, p)
					}
				}
				if len(pans) > 0 {
					t.Fatalf("card numbers %v in %q\nline %q", pans, s, line)
				}
			}
			if bytes.Contains(line, []byte(secretToken)) {
				t.Fatalf("token in line %q", line)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("read %d lines, want 2", n)
		}
	})
}
