package diag

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// Terminal is what the diagnostics port needs from the running agent. The agent package
// implements it (agent/diag.go); tests of this package use a fake.
type Terminal interface {
	// Status is everything the console's status page shows, gathered now.
	Status(ctx context.Context) Status
	// History is the resource samples kept for the charts, oldest first.
	History() []Sample
	// Events is the most recent events (newest last), at most n, with card numbers masked.
	Events(n int) []EventLine
	// Logs is the most recent lines of the agent's own log (newest last), at most n,
	// already redacted by the logging layer.
	Logs(n int) []string
	// Act runs one action (see the Action constants) with its JSON parameters (may be
	// empty). progress, when not nil, may be called with a percentage. The result is
	// marshalled to JSON for the caller. Unknown actions return ErrUnknownAction; bad
	// parameters a *ParamError.
	Act(ctx context.Context, action string, params json.RawMessage, progress func(pct int)) (any, error)
	// Bundle writes the diagnostics bundle (a gzip'd tar of logs and state, no secrets) to w.
	Bundle(ctx context.Context, w io.Writer) error
}

// Actions a technician can run. Reading status, events, logs and the audit log is allowed to
// every signed-in role; each action below is allowed per role by the security policy.
const (
	ActSelfTest    = "selftest"      // every device in turn: {results:[…]}
	ActPrintTest   = "test.print"    // a test page on the receipt printer
	ActCardTest    = "test.card"     // read a card (masked PAN, entry mode): params {timeoutSec}
	ActPINPadTest  = "test.pinpad"   // PIN pad display + beep
	ActLEDTest     = "test.led"      // status LED pattern
	ActBuzzerTest  = "test.buzzer"   // buzzer pattern
	ActDrawerTest  = "test.drawer"   // open the cash drawer
	ActEchoTMS     = "echo.tms"      // round trip to the TMS broker: {rttMs}
	ActEchoHost    = "echo.host"     // ISO 8583 echo to the acquirer host: {rttMs}
	ActECRApprove  = "ecr.approve"   // approve a pending cash-register registration: params {id}
	ActECRReject   = "ecr.reject"    // refuse a pending registration: params {id}
	ActLock        = "terminal.lock" // take the terminal out of service
	ActUnlock      = "terminal.unlock"
	ActSettle      = "settle"       // settle the batch now: the totals
	ActParamsSet   = "params.set"   // set a local parameter: params {name, value}
	ActBundle      = "bundle"       // export the diagnostics bundle (GET /api/bundle)
	ActAuditVerify = "audit.verify" // verify the audit chain
)

// Actions lists every action, in the console's order.
var Actions = []string{ActSelfTest, ActPrintTest, ActCardTest, ActPINPadTest, ActLEDTest, ActBuzzerTest,
	ActDrawerTest, ActEchoTMS, ActEchoHost, ActECRApprove, ActECRReject, ActLock, ActUnlock, ActSettle,
	ActParamsSet, ActBundle, ActAuditVerify}

// ErrUnknownAction: the action is not one of Actions (or this terminal cannot do it).
var ErrUnknownAction = errors.New("diag: unknown action")

// ParamError is an action's parameters refused; nothing was done.
type ParamError struct{ Reason string }

func (e *ParamError) Error() string { return "diag: bad parameters: " + e.Reason }

// Status is the console's status page. JSON names are the API's (docs/diag.md).
type Status struct {
	Time      time.Time      `json:"time"`
	Identity  Identity       `json:"identity"`
	Agent     AgentStatus    `json:"agent"`
	TMS       TMSStatus      `json:"tms"`
	Host      HostStatus     `json:"host"`
	Hardware  []Device       `json:"hardware"`
	Outbox    OutboxStatus   `json:"outbox"`
	Config    ConfigStatus   `json:"config"`
	Keys      []KeySlot      `json:"keys"`
	License   LicenseStatus  `json:"license"`
	Batch     BatchStatus    `json:"batch"`
	OTA       OTAStatus      `json:"ota"`
	Resources Sample         `json:"resources"`
	ECR       ECRStatus      `json:"ecr"`
	Params    []LocalParam   `json:"params"`
	Services  []ServiceState `json:"services,omitempty"` // only those not running cleanly
}

// Identity says which terminal this is.
type Identity struct {
	DeviceID     string `json:"deviceId"`
	Serial       string `json:"serial"`
	Model        string `json:"model"`
	Vendor       string `json:"vendor,omitempty"`
	Board        string `json:"board"`
	TerminalID   string `json:"terminalId,omitempty"`
	MerchantID   string `json:"merchantId,omitempty"`
	MerchantName string `json:"merchantName,omitempty"`
}

// AgentStatus is the running build and its slot.
type AgentStatus struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Target    string `json:"target"`
	Slot      string `json:"slot"`
	UptimeS   int64  `json:"uptimeS"`
	LastTrial string `json:"lastTrial,omitempty"`
}

// TMSStatus is the MQTT link (the broker address without credentials).
type TMSStatus struct {
	Connected   bool      `json:"connected"`
	Broker      string    `json:"broker"`
	ConnectedAt time.Time `json:"connectedAt,omitzero"`
	Connects    uint64    `json:"connects"`
	Failures    uint64    `json:"failures"`
	LastError   string    `json:"lastError,omitempty"`
}

// HostStatus is the acquirer host and the payment state.
type HostStatus struct {
	Configured bool   `json:"configured"`
	Address    string `json:"address,omitempty"`
	State      string `json:"state"` // signed-out, normal, locked
	Test       bool   `json:"test,omitempty"`
	Reversals  int    `json:"reversals"` // owed
	Held       int    `json:"held"`      // given up: manual handling
}

// Device is one device's state.
type Device struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// OutboxStatus is the uplink queue.
type OutboxStatus struct {
	Records int            `json:"records"`
	Bytes   int64          `json:"bytes"`
	Alarm   bool           `json:"alarm,omitempty"`
	Streams map[string]int `json:"streams,omitempty"`
}

// ConfigStatus is the terminal configuration in effect.
type ConfigStatus struct {
	Version uint64 `json:"version"`
}

// KeySlot is a loaded key: its check value only, never the key.
type KeySlot struct {
	Role     string    `json:"role"`
	KCV      string    `json:"kcv"`
	Alg      string    `json:"alg"`
	LoadedAt time.Time `json:"loadedAt,omitzero"`
}

// LicenseStatus is the installed licence.
type LicenseStatus struct {
	State    string    `json:"state"`
	ID       string    `json:"id,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	Features []string  `json:"features,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// BatchStatus is the open batch.
type BatchStatus struct {
	Number   int           `json:"number"`
	Count    int           `json:"count"`
	Settling bool          `json:"settling,omitempty"`
	Totals   []BatchTotals `json:"totals,omitempty"`
}

// BatchTotals are one currency's totals in minor units.
type BatchTotals struct {
	Currency     string `json:"currency"`
	SalesCount   int    `json:"salesCount"`
	SalesAmount  int64  `json:"salesAmount"`
	RefundCount  int    `json:"refundCount"`
	RefundAmount int64  `json:"refundAmount"`
}

// OTAStatus is the software and the update in progress (Progress 0..100 of Stage).
type OTAStatus struct {
	Slot       string            `json:"slot"`
	Components map[string]string `json:"components,omitempty"`
	Job        string            `json:"job,omitempty"`
	Stage      string            `json:"stage,omitempty"`
	Progress   int               `json:"progress"`
	LastTrial  string            `json:"lastTrial,omitempty"`
}

// Sample is one reading of resource use.
type Sample struct {
	Time       time.Time `json:"time"`
	CPUPercent float64   `json:"cpuPercent"` // the agent process, over the last interval
	RSSBytes   int64     `json:"rssBytes"`
	HeapBytes  int64     `json:"heapBytes"`
	Goroutines int       `json:"goroutines"`
	DiskFree   int64     `json:"diskFree"`
	DiskTotal  int64     `json:"diskTotal"`
	OutboxRecs int       `json:"outboxRecords"`
}

// ECRStatus is the cash-register API and its registrations waiting for approval.
type ECRStatus struct {
	Listen    string            `json:"listen,omitempty"`
	Protected bool              `json:"protected"`
	Pending   []ECRRegistration `json:"pending,omitempty"`
}

// ECRRegistration is a cash register's register request waiting on the terminal.
type ECRRegistration struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Remote    string    `json:"remote,omitempty"`
	Requested time.Time `json:"requested"`
}

// LocalParam is a parameter a technician may set on the terminal.
type LocalParam struct {
	Name        string   `json:"name"`
	Value       string   `json:"value"`
	Choices     []string `json:"choices,omitempty"`
	Description string   `json:"description"`
	Pending     bool     `json:"pending,omitempty"` // takes effect at the next start
}

// ServiceState is a service not running cleanly.
type ServiceState struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Restarts  int    `json:"restarts,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// EventLine is one recent event.
type EventLine struct {
	Time   time.Time      `json:"time"`
	Kind   string         `json:"kind"`
	Fields map[string]any `json:"fields,omitempty"`
}
