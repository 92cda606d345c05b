package diag

// Results of the actions, as the console and the CLI read them. The Terminal may return any
// JSON-encodable value; these are the shapes the console renders best (docs/diag.md).

// SelfTestResult is the selftest action's result.
type SelfTestResult struct {
	OK      bool           `json:"ok"`
	Results []DeviceResult `json:"results"`
}

// DeviceResult is one device's self-test.
type DeviceResult struct {
	Device  string `json:"device"`
	Kind    string `json:"kind"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"` // not tested; does not fail the self-test
	Detail  string `json:"detail,omitempty"`
}

// EchoResult is the result of echo.tms and echo.host.
type EchoResult struct {
	RTTMs int64 `json:"rttMs"`
}

// CardTestResult is the result of test.card: the card number masked (first 6, last 4), never
// track data.
type CardTestResult struct {
	PAN       string `json:"pan"`
	EntryMode string `json:"entryMode"`
}
