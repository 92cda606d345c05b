package ecrclient

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The example bodies of seed 003 §4.15–4.22, as the terminal sends them. The seed's own text
// of the QR and refund examples has misplaced braces and trailing commas (a copy from a
// document); these are the same fields with the nesting of the card example and of
// docs/ecr-api.md (everything of the receipt inside chequeInfo).
const (
	specPaymentStarted = `{ "data": { "processId": "1678090451700", "status": "wait" }, "statusCode": 0 }`
	specPaymentBad     = `{ "errorText": "Param unvalidated: amount. Must be greater 0", "statusCode": 999 }`
	specStatusWait     = `{ "data": { "processId": "1678090708423", "status": "wait", "subStatus": "Initialize" }, "statusCode": 0 }`
	specQRSuccess      = `{ "data": { "addInfo": { "LoanTerm": 0, "IsOffer": false, "ProductType": "Gold" },
		"chequeInfo": { "address": "Қонаев 11, 6", "amount": "1 ₸", "bin": "960419351140", "city": "Алматы қ.",
		"date": "06.03.23 14:20:11", "method": "qr", "orderNumber": "504711333",
		"status": "Kaspi Gold-ман сатып алу. Мақұлданды", "storeName": "Kaspi Mark", "terminalId": "31452963", "type": "payment" },
		"processId": "1678090708423", "status": "success", "subStatus": "QrTransactionSuccess", "transactionId": "504711333" },
		"statusCode": 0 }`
	specCardSuccess = `{ "data": { "addInfo": { "IsOffer": false, "LoanTerm": 0, "ProductType": "Gold" },
		"chequeInfo": { "address": "Қонаев 11, 6", "amount": "1 ₸", "authorizationCode": "665425", "bin": "960419351140",
		"cardMask": "440043*****6389", "city": " Алматы қ.", "date": "13.03.23 14:31:39", "hostResponseCode": "000",
		"icc": "Visa Debit", "method": "card", "rrn": "307208187011", "status": " Kaspi Gold-ман сатып алу. Мақұлданды",
		"storeName": "Kaspi Mark", "terminalId": "31452963", "type": "payment" },
		"processId": "1678696290407", "status": "success", "subStatus": "CardTransactionSuccess", "transactionId": "307208187011" },
		"statusCode": 0 }`
	specQRRefund = `{ "data": { "addInfo": { "IsOffer": false, "LoanTerm": 0, "ProductType": "Gold" },
		"chequeInfo": { "address": "Қонаев 11, 6", "amount": "- 1 ₸", "bin": "960419351140", "city": "Алматы қ.",
		"date": "06.03.23 14:21:40", "method": "qr", "orderNumber": "504711335", "status": "Қайтару сәтті жасалды",
		"storeName": "Kaspi Mark", "terminalId": "31452963", "type": "refund" },
		"processId": "1678090915873", "status": "success", "subStatus": "QrTransactionSuccess", "transactionId": "504711335" },
		"statusCode": 0 }`
	specCardRefund = `{ "data": { "addInfo": { "IsOffer": false, "LoanTerm": 0, "ProductType": "Gold" },
		"chequeInfo": { "address": "Қонаев 11, 6", "amount": "- 1 ₸", "authorizationCode": "589719", "bin": "960419351140",
		"cardMask": "440043*****6389", "city": " Алматы қ.", "date": "13.03.23 14:32:37", "hostResponseCode": "000",
		"icc": "", "method": "card", "rrn": "307208187011", "status": " Қайтару сәтті жасалды", "storeName": "Kaspi Mark",
		"terminalId": "31452963", "type": "refund" },
		"processId": "1678696351229", "status": "success", "subStatus": "CardTransactionSuccess", "transactionId": "307208187011" },
		"statusCode": 0 }`
	specFail = `{ "data": { "message": "Сатып алымды жою; Сатып алушы сатып алуды жойды", "processId": "1678091002800",
		"status": "fail", "subStatus": "QrTransactionFailure" }, "statusCode": 0 }`
	specUnknown = `{ "data": { "message": "Операция жойылды", "processId": "1678092832132", "status": "unknown",
		"subStatus": "ProcessCancelled" }, "statusCode": 0 }`
	specProcessNotFound = `{ "errorText": "Process not found", "statusCode": 101 }`
	specActualized      = `{ "data": { "message": "Сатып алымды жою; Сатып алушы сатып алуды растаған жоқ", "processId": "1678094695687",
		"status": "fail", "subStatus": "ProcessCancelled" }, "statusCode": 0 }`
	specRefundStarted  = `{ "data": { "processId": "1678092396883", "status": "wait" }, "statusCode": 0 }`
	specRefundBad      = `{ "errorText": "Param unvalidated: method. Unknown payment method", "statusCode": 999 }`
	specRegistered     = `{ "data": { "accessToken": "99af370951a7b154a4ebd0c554d7eb24", "expirationDate": "Mar 7, 2023 15:02:56", "refreshToken": "d4a853dd320d179fde3271901c116bec" }, "statusCode": 0 }`
	specRegisterBusy   = `{ "data": { "message": "Register Error. Last register request not completed" }, "errorText": "Error acquired in service process", "statusCode": 105 }`
	specRegisterNoName = `{ "errorText": "Missing param: name", "statusCode": 999 }`
	specRevoked        = `{ "data": { "accessToken": "665495959cd859bce7b887cff45e79ba", "expirationDate": "Mar 7, 2023 15:15:50", "refreshToken": "343755b21c9388eda4a0a221d560410c" }, "statusCode": 0 }`
	specRevokeWrong    = `{ "data": { "message": "Revoke Error. Wrong refresh token" }, "errorText": "Error acquired in service process", "statusCode": 105 }`
	specRevokeEmpty    = `{ "errorText": "Param unvalidated: refreshToken. It's empty", "statusCode": 999 }`
	specDeviceInfo     = `{ "data": { "posNum": "0", "serialNum": "00043010171", "terminalId": "31452963" }, "statusCode": 0 }`
	specInvalidURL     = `{ "errorText": "Invalid Url. Please, contact developers", "statusCode": 999 }`
)

func boolp(b bool) *bool { return &b }

var gold = &AddInfo{IsOffer: false, LoanTerm: 0, ProductType: "Gold"}

func TestSpecStatusExamples(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Status
	}{
		{"wait", specStatusWait, Status{ProcessID: "1678090708423", Status: StatusWait, SubStatus: "Initialize"}},
		{"qr payment", specQRSuccess, Status{
			ProcessID: "1678090708423", Status: StatusSuccess, SubStatus: "QrTransactionSuccess", TransactionID: "504711333",
			AddInfo: gold,
			ChequeInfo: &ChequeInfo{Address: "Қонаев 11, 6", Amount: "1 ₸", BIN: "960419351140", City: "Алматы қ.",
				Date: "06.03.23 14:20:11", Method: MethodQR, OrderNumber: "504711333", Status: "Kaspi Gold-ман сатып алу. Мақұлданды",
				StoreName: "Kaspi Mark", TerminalID: "31452963", Type: "payment"},
		}},
		{"card payment", specCardSuccess, Status{
			ProcessID: "1678696290407", Status: StatusSuccess, SubStatus: "CardTransactionSuccess", TransactionID: "307208187011",
			AddInfo: gold,
			ChequeInfo: &ChequeInfo{Address: "Қонаев 11, 6", Amount: "1 ₸", AuthorizationCode: "665425", BIN: "960419351140",
				CardMask: "440043*****6389", City: " Алматы қ.", Date: "13.03.23 14:31:39", HostResponseCode: "000",
				ICC: "Visa Debit", Method: MethodCard, RRN: "307208187011", Status: " Kaspi Gold-ман сатып алу. Мақұлданды",
				StoreName: "Kaspi Mark", TerminalID: "31452963", Type: "payment"},
		}},
		{"qr refund", specQRRefund, Status{
			ProcessID: "1678090915873", Status: StatusSuccess, SubStatus: "QrTransactionSuccess", TransactionID: "504711335",
			AddInfo: gold,
			ChequeInfo: &ChequeInfo{Address: "Қонаев 11, 6", Amount: "- 1 ₸", BIN: "960419351140", City: "Алматы қ.",
				Date: "06.03.23 14:21:40", Method: MethodQR, OrderNumber: "504711335", Status: "Қайтару сәтті жасалды",
				StoreName: "Kaspi Mark", TerminalID: "31452963", Type: "refund"},
		}},
		{"card refund", specCardRefund, Status{
			ProcessID: "1678696351229", Status: StatusSuccess, SubStatus: "CardTransactionSuccess", TransactionID: "307208187011",
			AddInfo: gold,
			ChequeInfo: &ChequeInfo{Address: "Қонаев 11, 6", Amount: "- 1 ₸", AuthorizationCode: "589719", BIN: "960419351140",
				CardMask: "440043*****6389", City: " Алматы қ.", Date: "13.03.23 14:32:37", HostResponseCode: "000",
				Method: MethodCard, RRN: "307208187011", Status: " Қайтару сәтті жасалды", StoreName: "Kaspi Mark",
				TerminalID: "31452963", Type: "refund"},
		}},
		{"fail", specFail, Status{ProcessID: "1678091002800", Status: StatusFail, SubStatus: "QrTransactionFailure",
			Message: "Сатып алымды жою; Сатып алушы сатып алуды жойды"}},
		{"unknown", specUnknown, Status{ProcessID: "1678092832132", Status: StatusUnknown, SubStatus: "ProcessCancelled",
			Message: "Операция жойылды"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on(PathStatus, ok(tc.body))
			c := New(f.srv.URL, Options{})
			got, err := c.Status(context.Background(), tc.want.ProcessID)
			if err != nil {
				t.Fatal(err)
			}
			if q := f.last().query.Get("processId"); q != tc.want.ProcessID {
				t.Errorf("processId sent %q, want %q", q, tc.want.ProcessID)
			}
			if len(got.Raw) == 0 || got.Extra() != nil {
				t.Errorf("Raw %q, Extra %v: want the data object and no extra fields", got.Raw, got.Extra())
			}
			got.Raw = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, tc.want)
			}
			if got.ChequeInfo != nil && !reflect.DeepEqual(got.ChequeInfo, tc.want.ChequeInfo) {
				t.Errorf("chequeInfo\n%+v\nwant\n%+v", *got.ChequeInfo, *tc.want.ChequeInfo)
			}
			if got.Final() != (tc.want.Status != StatusWait) {
				t.Errorf("Final() = %v for status %q", got.Final(), got.Status)
			}
		})
	}
}

func TestPinEntered(t *testing.T) {
	s, err := DecodeStatus([]byte(`{"status":"success","chequeInfo":{"pinEntered":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.ChequeInfo.PinEntered, boolp(true)) {
		t.Errorf("pinEntered = %v, want true", s.ChequeInfo.PinEntered)
	}
	s, err = DecodeStatus([]byte(`{"status":"success","chequeInfo":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.ChequeInfo.PinEntered != nil {
		t.Errorf("absent pinEntered decoded as %v, want nil", *s.ChequeInfo.PinEntered)
	}
}

func TestSpecStartsAndTokens(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.on(PathPayment, ok(specPaymentStarted))
	f.on(PathRefund, ok(specRefundStarted))
	f.on(PathRegister, ok(specRegistered))
	f.on(PathRevoke, ok(specRevoked))
	f.on(PathDeviceInfo, ok(specDeviceInfo))
	f.on(PathActualize, ok(specActualized))
	c := New(f.srv.URL, Options{})

	id, err := c.Payment(ctx, 10, true)
	if err != nil || id != "1678090451700" {
		t.Fatalf("Payment = %q, %v", id, err)
	}
	if q := f.last().query; q.Get("amount") != "10" || q.Get("owncheque") != "true" {
		t.Errorf("payment query %v", q)
	}

	id, err = c.Refund(ctx, 10, MethodCard, "202616353838", false)
	if err != nil || id != "1678092396883" {
		t.Fatalf("Refund = %q, %v", id, err)
	}
	if q := f.last().query; q.Get("amount") != "10" || q.Get("method") != "card" || q.Get("transactionId") != "202616353838" || q.Get("owncheque") != "false" {
		t.Errorf("refund query %v", q)
	}

	st, err := c.Actualize(ctx, "1678094695687")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusFail || st.SubStatus != "ProcessCancelled" || st.Message != "Сатып алымды жою; Сатып алушы сатып алуды растаған жоқ" {
		t.Errorf("Actualize = %+v", st)
	}
	if f.last().path != PathActualize || f.last().query.Get("processId") != "1678094695687" {
		t.Errorf("actualize request %+v", f.last())
	}

	tok, err := c.Register(ctx, "Kashier1")
	if err != nil {
		t.Fatal(err)
	}
	want := Tokens{AccessToken: "99af370951a7b154a4ebd0c554d7eb24", RefreshToken: "d4a853dd320d179fde3271901c116bec", ExpirationDate: "Mar 7, 2023 15:02:56"}
	if tok != want {
		t.Errorf("Register = %+v, want %+v", tok, want)
	}
	if f.last().query.Get("name") != "Kashier1" {
		t.Errorf("register query %v", f.last().query)
	}

	tok, err = c.Revoke(ctx, "NewPOS", "d4a853dd320d179fde3271901c116bec")
	if err != nil {
		t.Fatal(err)
	}
	want = Tokens{AccessToken: "665495959cd859bce7b887cff45e79ba", RefreshToken: "343755b21c9388eda4a0a221d560410c", ExpirationDate: "Mar 7, 2023 15:15:50"}
	if tok != want {
		t.Errorf("Revoke = %+v, want %+v", tok, want)
	}
	if q := f.last().query; q.Get("name") != "NewPOS" || q.Get("refreshToken") != "d4a853dd320d179fde3271901c116bec" {
		t.Errorf("revoke query %v", q)
	}

	di, err := c.DeviceInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if di != (DeviceInfo{PosNum: "0", SerialNum: "00043010171", TerminalID: "31452963"}) {
		t.Errorf("DeviceInfo = %+v", di)
	}
}

func TestSpecErrorExamples(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		path     string
		rep      reply
		call     func(*Client) error
		want     APIError
		sentinel error
		message  string
	}{
		{"payment amount", PathPayment, reply{400, specPaymentBad},
			func(c *Client) error { _, err := c.Payment(ctx, 0, false); return err },
			APIError{HTTP: 400, Code: 999, Text: "Param unvalidated: amount. Must be greater 0"}, ErrBadRequest, ""},
		{"status not found", PathStatus, ok(specProcessNotFound),
			func(c *Client) error { _, err := c.Status(ctx, "1"); return err },
			APIError{HTTP: 200, Code: 101, Text: "Process not found"}, ErrProcessNotFound, ""},
		{"refund method", PathRefund, reply{400, specRefundBad},
			func(c *Client) error { _, err := c.Refund(ctx, 1, "cash", "1", false); return err },
			APIError{HTTP: 400, Code: 999, Text: "Param unvalidated: method. Unknown payment method"}, ErrBadRequest, ""},
		{"register pending", PathRegister, ok(specRegisterBusy),
			func(c *Client) error { _, err := c.Register(ctx, "K"); return err },
			APIError{HTTP: 200, Code: 105, Text: "Error acquired in service process"}, ErrService,
			"Register Error. Last register request not completed"},
		{"register no name", PathRegister, reply{400, specRegisterNoName},
			func(c *Client) error { _, err := c.Register(ctx, ""); return err },
			APIError{HTTP: 400, Code: 999, Text: "Missing param: name"}, ErrBadRequest, ""},
		{"revoke wrong", PathRevoke, ok(specRevokeWrong),
			func(c *Client) error { _, err := c.Revoke(ctx, "K", "x"); return err },
			APIError{HTTP: 200, Code: 105, Text: "Error acquired in service process"}, ErrService,
			"Revoke Error. Wrong refresh token"},
		{"revoke empty", PathRevoke, reply{400, specRevokeEmpty},
			func(c *Client) error { _, err := c.Revoke(ctx, "K", ""); return err },
			APIError{HTTP: 400, Code: 999, Text: "Param unvalidated: refreshToken. It's empty"}, ErrBadRequest, ""},
		{"invalid url", "/v2/none", reply{404, specInvalidURL},
			func(c *Client) error { _, err := c.DeviceInfo(ctx); return err },
			APIError{HTTP: 404, Code: 999, Text: "Invalid Url. Please, contact developers"}, ErrNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on(tc.path, tc.rep)
			err := tc.call(New(f.srv.URL, Options{}))
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want *APIError", err, err)
			}
			if ae.HTTP != tc.want.HTTP || ae.Code != tc.want.Code || ae.Text != tc.want.Text {
				t.Errorf("APIError %+v, want %+v", *ae, tc.want)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.sentinel)
			}
			if ae.Message() != tc.message {
				t.Errorf("Message() = %q, want %q", ae.Message(), tc.message)
			}
		})
	}
}

// Every code and HTTP status of the spec's table maps to its sentinel and to no other.
func TestAPIErrorMapping(t *testing.T) {
	all := []error{ErrNoInternet, ErrProcessNotFound, ErrUnsupportedMethod, ErrNotActualizable,
		ErrTransactionNotFound, ErrService, ErrBlocked, ErrBusy, ErrStartFailed,
		ErrBadRequest, ErrUnauthorized, ErrForbidden, ErrNotFound, ErrInternal}
	for _, tc := range []struct {
		http int
		body string
		want []error
	}{
		{400, `{"statusCode":999,"errorText":"Missing param: amount"}`, []error{ErrBadRequest}},
		{400, `{"statusCode":106,"errorText":"Payments are blocked"}`, []error{ErrBadRequest, ErrBlocked}},
		{401, `{"statusCode":999,"errorText":"Authorization failed"}`, []error{ErrUnauthorized}},
		{401, `{"statusCode":999,"errorText":"Session expires and need to be updated"}`, []error{ErrUnauthorized}},
		{403, ``, []error{ErrForbidden}},
		{404, `{"statusCode":999,"errorText":"Invalid Url. Please, contact developers"}`, []error{ErrNotFound}},
		{500, `{"statusCode":999,"errorText":"Internal Error. Please, contact developers"}`, []error{ErrInternal}},
		{500, `<html>proxy error</html>`, []error{ErrInternal}},
		{200, `{"statusCode":100,"errorText":"No internet"}`, []error{ErrNoInternet}},
		{200, `{"statusCode":101,"errorText":"Process not found"}`, []error{ErrProcessNotFound}},
		{200, `{"statusCode":102,"errorText":"Unsupported transaction pay method"}`, []error{ErrUnsupportedMethod}},
		{200, `{"statusCode":103,"errorText":"This transaction is unable to actualize"}`, []error{ErrNotActualizable}},
		{200, `{"statusCode":104,"errorText":"Transaction not found"}`, []error{ErrTransactionNotFound}},
		{200, `{"statusCode":105,"errorText":"Error acquired in service process","data":{"message":"m"}}`, []error{ErrService}},
		{200, `{"statusCode":106,"errorText":"Payments are blocked"}`, []error{ErrBlocked}},
		{200, `{"statusCode":107,"errorText":"Could not register transaction. Last operation was not completed."}`, []error{ErrBusy}},
		{200, `{"statusCode":108,"errorText":"Could not register transaction. Something went wrong."}`, []error{ErrStartFailed}},
		{200, `{"statusCode":555}`, nil},
	} {
		f := newFake(t)
		f.on(PathEcho, reply{tc.http, tc.body})
		env, err := New(f.srv.URL, Options{}).Call(context.Background(), "echo", nil)
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Errorf("%d %s: error %v, want *APIError", tc.http, tc.body, err)
			continue
		}
		if ae.HTTP != tc.http || env.HTTP != tc.http || env.StatusCode != ae.Code || env.ErrorText != ae.Text {
			t.Errorf("%d %s: APIError %+v, envelope %+v", tc.http, tc.body, *ae, env)
		}
		for _, s := range all {
			want := false
			for _, w := range tc.want {
				want = want || w == s
			}
			if errors.Is(err, s) != want {
				t.Errorf("%d %s: errors.Is(%v) = %v, want %v", tc.http, tc.body, s, !want, want)
			}
		}
	}
}

func TestAPIErrorText(t *testing.T) {
	for _, tc := range []struct {
		e    APIError
		want string
	}{
		{APIError{HTTP: 200, Code: 107, Text: "Could not register transaction. Last operation was not completed."},
			"ecr: code 107 Could not register transaction. Last operation was not completed."},
		{APIError{HTTP: 400, Code: 999, Text: "Missing param: name"}, "ecr: HTTP 400 Bad Request: code 999 Missing param: name"},
		{APIError{HTTP: 403}, "ecr: HTTP 403 Forbidden"},
		{APIError{HTTP: 200, Code: 105, Text: "Error acquired in service process", Data: []byte(`{"message":"Revoke Error. Wrong refresh token"}`)},
			"ecr: code 105 Error acquired in service process (Revoke Error. Wrong refresh token)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestMalformedAnswers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		path string
		body string
		call func(*Client) error
	}{
		{"html", PathEcho, `<html></html>`, func(c *Client) error { _, err := c.Echo(ctx); return err }},
		{"no status code", PathEcho, `{"data":{}}`, func(c *Client) error { _, err := c.Echo(ctx); return err }},
		{"string status code", PathEcho, `{"statusCode":"0"}`, func(c *Client) error { _, err := c.Echo(ctx); return err }},
		{"data array", PathEcho, `{"statusCode":0,"data":[1]}`, func(c *Client) error { _, err := c.Echo(ctx); return err }},
		{"start without id", PathPayment, `{"statusCode":0,"data":{"status":"wait"}}`,
			func(c *Client) error { _, err := c.Payment(ctx, 1, false); return err }},
		{"status without status", PathStatus, `{"statusCode":0,"data":{"processId":"1"}}`,
			func(c *Client) error { _, err := c.Status(ctx, "1"); return err }},
		{"status data missing", PathStatus, `{"statusCode":0}`,
			func(c *Client) error { _, err := c.Status(ctx, "1"); return err }},
		{"cheque of wrong type", PathStatus, `{"statusCode":0,"data":{"status":"success","chequeInfo":{"pinEntered":"yes"}}}`,
			func(c *Client) error { _, err := c.Status(ctx, "1"); return err }},
		{"tokens missing", PathRegister, `{"statusCode":0,"data":{"expirationDate":"x"}}`,
			func(c *Client) error { _, err := c.Register(ctx, "K"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on(tc.path, ok(tc.body))
			err := tc.call(New(f.srv.URL, Options{}))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v, want ErrMalformed", err)
			}
			var ae *APIError
			if errors.As(err, &ae) {
				t.Errorf("a malformed answer reported as %v", ae)
			}
		})
	}
}

// A body the size limit cuts is refused whole, not decoded in part; one of exactly the limit is
// read.
func TestResponseBounded(t *testing.T) {
	body := func(size int) string {
		head, tail := `{"statusCode":0,"data":{"posNum":"1","pad":"`, `"}}`
		return head + strings.Repeat("a", size-len(head)-len(tail)) + tail
	}
	f := newFake(t)
	f.on(PathEcho, ok(body(MaxResponseSize+1)))
	f.on(PathDeviceInfo, ok(body(MaxResponseSize)))
	c := New(f.srv.URL, Options{})
	if _, err := c.Echo(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over the limit: %v, want ErrTooLarge", err)
	}
	di, err := c.DeviceInfo(context.Background())
	if err != nil || di.PosNum != "1" {
		t.Errorf("at the limit: %+v, %v", di, err)
	}
}
