package ecr

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// The refusals of bad calls, to the letter: cash-register software matches the texts.
func TestParseRequestRefusals(t *testing.T) {
	const max = 9_999_999_999
	cases := []struct {
		path, query string
		http, code  int
		text        string
	}{
		{"/v2/nothing", "", 404, 999, "Invalid Url. Please, contact developers"},
		{"/v1/payment", "amount=1", 404, 999, "Invalid Url. Please, contact developers"},
		{"/v2/", "", 404, 999, "Invalid Url. Please, contact developers"},
		{"/v2/payment", "", 400, 999, "Missing param: amount"},
		{"/v2/payment", "amount=", 400, 999, "Param unvalidated: amount. It's empty"},
		{"/v2/payment", "amount=0", 400, 999, "Param unvalidated: amount. Must be greater 0"},
		{"/v2/payment", "amount=-5", 400, 999, "Param unvalidated: amount. Must be greater 0"},
		{"/v2/payment", "amount=10.5", 400, 999, "Param unvalidated: amount. Must be integer"},
		{"/v2/payment", "amount=1e3", 400, 999, "Param unvalidated: amount. Must be integer"},
		{"/v2/payment", "amount=%2B5", 400, 999, "Param unvalidated: amount. Must be integer"},
		{"/v2/payment", "amount=abc", 400, 999, "Param unvalidated: amount. Must be integer"},
		{"/v2/payment", "amount=10&amount=20", 400, 999, "Param unvalidated: amount. Must be given once"},
		{"/v2/payment", "amount=99999999999999999999999", 400, 999, "Param unvalidated: amount. Must be at most 9999999999"},
		{"/v2/payment", "amount=10000000000", 400, 999, "Param unvalidated: amount. Must be at most 9999999999"},
		{"/v2/payment", "amount=10&owncheque=maybe", 400, 999, "Param unvalidated: owncheque. Must be true or false"},
		{"/v2/payment", "amount=10;x", 400, 999, "Param unvalidated: query. Malformed query string"},
		{"/v2/payment", "amount=%zz", 400, 999, "Param unvalidated: query. Malformed query string"},
		{"/v2/payment", "amount=1&pad=" + strings.Repeat("x", MaxQuery), 400, 999, "Param unvalidated: query. Must be at most 2048 characters"},
		{"/v2/refund", "amount=10&transactionId=1", 400, 999, "Missing param: method"},
		{"/v2/refund", "amount=10&method=cash&transactionId=1", 400, 999, "Param unvalidated: method. Unknown payment method"},
		{"/v2/refund", "amount=10&method=card", 400, 999, "Missing param: transactionId"},
		{"/v2/refund", "amount=10&method=card&transactionId=", 400, 999, "Param unvalidated: transactionId. It's empty"},
		{"/v2/refund", "amount=10&method=card&transactionId=" + strings.Repeat("1", 65), 400, 999, "Param unvalidated: transactionId. Must be at most 64 characters"},
		{"/v2/refund", "amount=10&method=card&transactionId=%01", 400, 999, "Param unvalidated: transactionId. Must be printable"},
		{"/v2/status", "", 400, 999, "Missing param: processId"},
		{"/v2/status", "processId=", 400, 999, "Param unvalidated: processId. It's empty"},
		{"/v2/register", "", 400, 999, "Missing param: name"},
		{"/v2/revoke", "name=a&refreshToken=", 400, 999, "Param unvalidated: refreshToken. It's empty"},
		{"/v2/preauth/complete", "transactionId=1", 400, 999, "Missing param: amount"},
	}
	for _, c := range cases {
		_, err := ParseRequest(c.path, c.query, max)
		if err == nil {
			t.Errorf("%s?%.40s: accepted", c.path, c.query)
			continue
		}
		if err.HTTP != c.http || err.Code != c.code || err.Text != c.text {
			t.Errorf("%s?%.40s: %d %d %q, want %d %d %q", c.path, c.query, err.HTTP, err.Code, err.Text, c.http, c.code, c.text)
		}
	}
}

func TestParseRequestAccepts(t *testing.T) {
	r, err := ParseRequest("/v2/payment", "amount=1500&owncheque=true&cashier=Anna", 9_999_999_999)
	if err != nil || r.Endpoint != "payment" || r.Amount != 1500 || !r.HasAmount || !r.OwnCheque {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest("/v2/refund", "method=qr&amount=10&transactionId=504711333", 100)
	if err != nil || r.Method != "qr" || r.TransactionID != "504711333" || r.Amount != 10 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest("/v2/deviceinfo", "", 100)
	if err != nil || r.Endpoint != "deviceinfo" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest("/v2/report", "short=TRUE", 100)
	if err != nil || !r.Short {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest("/v2/revoke", "name=Kassa%201&refreshToken=d4a853dd320d179fde3271901c116bec", 100)
	if err != nil || r.Name != "Kassa 1" || r.RefreshToken != "d4a853dd320d179fde3271901c116bec" {
		t.Fatalf("%+v %v", r, err)
	}
}

// The envelope of an error has no data except 105's message, and no errorText on success.
func TestEnvelopeShapes(t *testing.T) {
	for _, c := range []struct {
		env  envelope
		want string
	}{
		{missing("amount").envelope(), `{"errorText":"Missing param: amount","statusCode":999}`},
		{serviceError("Register Error. Last register request not completed").envelope(),
			`{"data":{"message":"Register Error. Last register request not completed"},"errorText":"Error acquired in service process","statusCode":105}`},
		{startFailed("disk").envelope(), `{"errorText":"Could not register transaction. Something went wrong.","statusCode":108}`},
		{envelope{Data: map[string]string{"processId": "1", "status": "wait"}}, `{"data":{"processId":"1","status":"wait"},"statusCode":0}`},
	} {
		code, b := encode(c.env)
		if code != http.StatusOK || string(b) != c.want {
			t.Errorf("%s\nwant %s", b, c.want)
		}
	}
}

// FuzzParseRequest: any path and query is either a request or one of the API's own
// refusals — never a panic, never an unbounded value.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][2]string{{"/v2/payment", "amount=10&owncheque=true"}, {"/v2/refund", "amount=1&method=qr&transactionId=5"},
		{"/v2/status", "processId=1678090451700"}, {"/v2/x", ""}, {"/v2/payment", "amount=%%"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		r, err := ParseRequest(path, query, 9_999_999_999)
		if err != nil {
			if err.Code != CodeGeneric || (err.HTTP != 400 && err.HTTP != 404) || err.Text == "" {
				t.Fatalf("odd refusal %+v", err)
			}
			return
		}
		if _, ok := endpoints[r.Endpoint]; !ok {
			t.Fatalf("unknown endpoint accepted: %q", r.Endpoint)
		}
		if r.HasAmount && (r.Amount <= 0 || r.Amount > 9_999_999_999) {
			t.Fatalf("amount %d", r.Amount)
		}
		for _, s := range []string{r.TransactionID, r.Name, r.ProcessID, r.RefreshToken} {
			if utf8.RuneCountInString(s) > maxText {
				t.Fatalf("text of %d bytes", len(s))
			}
		}
	})
}
