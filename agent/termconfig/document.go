package termconfig

import "strings"

// Document is the whole terminal configuration. Field names on the wire are the cbor tags;
// the json tags carry the same names for local files and the documentation.
type Document struct {
	// Version numbers the document; the TMS raises it for every change. 0 is reserved for the
	// factory configuration.
	Version              uint64               `cbor:"version,omitempty" json:"version,omitempty"`
	CashierProfile       CashierProfile       `cbor:"cashierProfile,omitempty" json:"cashierProfile,omitzero"`
	TMS                  TMSParameters        `cbor:"tms,omitempty" json:"tms,omitzero"`
	AcquirerProfile      AcquirerProfile      `cbor:"acquirerProfile,omitempty" json:"acquirerProfile,omitzero"`
	ContactlessProfile   ContactlessProfile   `cbor:"contactlessProfile,omitempty" json:"contactlessProfile,omitzero"`
	AuthHost             AuthHost             `cbor:"authHost,omitempty" json:"authHost,omitzero"`
	Currencies           []Currency           `cbor:"currencies,omitempty" json:"currencies,omitempty"`
	BINRanges            []BINRange           `cbor:"binRanges,omitempty" json:"binRanges,omitempty"`
	CountryCode          string               `cbor:"countryCode,omitempty" json:"countryCode,omitempty"`
	QRHosts              []QRHost             `cbor:"qrHosts,omitempty" json:"qrHosts,omitempty"`
	DynamicLimits        []DynamicLimit       `cbor:"dynamicLimits,omitempty" json:"dynamicLimits,omitempty"`
	EMVSpecialProcessing []EMVSpecialRule     `cbor:"emvSpecialProcessing,omitempty" json:"emvSpecialProcessing,omitempty"`
	PrintProfile         PrintProfile         `cbor:"printProfile,omitempty" json:"printProfile,omitzero"`
	AllowedOperations    []Operation          `cbor:"allowedOperations,omitempty" json:"allowedOperations,omitempty"`
	Certificates         []CertificateRef     `cbor:"certificates,omitempty" json:"certificates,omitempty"`
	EMVApplications      []EMVApplication     `cbor:"emvApplications,omitempty" json:"emvApplications,omitempty"`
	TerminalActionCodes  ActionCodes          `cbor:"terminalActionCodes,omitempty" json:"terminalActionCodes,omitzero"`
	PaymentParameters    PaymentParameters    `cbor:"paymentParameters,omitempty" json:"paymentParameters,omitzero"`
	PaymentProfile       PaymentProfile       `cbor:"paymentProfile,omitempty" json:"paymentProfile,omitzero"`
	TerminalCapabilities TerminalCapabilities `cbor:"terminalCapabilities,omitempty" json:"terminalCapabilities,omitzero"`
	HostParameters       HostParameters       `cbor:"hostParameters,omitempty" json:"hostParameters,omitzero"`
	ECR                  ECRSettings          `cbor:"ecr,omitempty" json:"ecr,omitzero"`
	Security             SecurityPolicy       `cbor:"security,omitempty" json:"security,omitzero"`
}

// CashierProfile governs the people working the terminal (seed 004 §6.2: administrator,
// supervisor, operators).
type CashierProfile struct {
	// OperatorLogin makes operators sign on with code and password before transacting. Off for
	// terminals driven only by a cash register, where the till identifies the cashier.
	OperatorLogin       bool        `cbor:"operatorLogin,omitempty" json:"operatorLogin,omitempty"`
	SessionTimeoutSec   uint32      `cbor:"sessionTimeoutSec,omitempty" json:"sessionTimeoutSec,omitempty"`
	MaxOperators        uint16      `cbor:"maxOperators,omitempty" json:"maxOperators,omitempty"`
	PasswordMinLength   uint8       `cbor:"passwordMinLength,omitempty" json:"passwordMinLength,omitempty"`
	MaxPasswordAttempts uint8       `cbor:"maxPasswordAttempts,omitempty" json:"maxPasswordAttempts,omitempty"`
	SupervisorApproval  []Operation `cbor:"supervisorApproval,omitempty" json:"supervisorApproval,omitempty"`
}

// TMSParameters tune the agent's own link to the TMS.
type TMSParameters struct {
	StatsIntervalSec    uint32            `cbor:"statsIntervalSec,omitempty" json:"statsIntervalSec,omitempty"`
	KeepaliveSec        uint16            `cbor:"keepaliveSec,omitempty" json:"keepaliveSec,omitempty"`
	ReconnectMinSec     uint16            `cbor:"reconnectMinSec,omitempty" json:"reconnectMinSec,omitempty"`
	ReconnectMaxSec     uint16            `cbor:"reconnectMaxSec,omitempty" json:"reconnectMaxSec,omitempty"`
	LogUpload           LogUploadSchedule `cbor:"logUpload,omitempty" json:"logUpload,omitzero"`
	MaintenanceWindow   TimeWindow        `cbor:"maintenanceWindow,omitempty" json:"maintenanceWindow,omitzero"`
	UpdatesOnlyInWindow bool              `cbor:"updatesOnlyInWindow,omitempty" json:"updatesOnlyInWindow,omitempty"`
}

// LogUploadSchedule says when logs go up without the TMS asking (logs.upload still works at
// any time).
type LogUploadSchedule struct {
	Mode        LogUploadMode `cbor:"mode,omitempty" json:"mode,omitempty"`
	IntervalSec uint32        `cbor:"intervalSec,omitempty" json:"intervalSec,omitempty"`
	DailyAt     string        `cbor:"dailyAt,omitempty" json:"dailyAt,omitempty"`
	Streams     []LogStream   `cbor:"streams,omitempty" json:"streams,omitempty"`
}

// LogUploadMode selects the log upload schedule.
type LogUploadMode string

// Log upload modes.
const (
	LogUploadOff      LogUploadMode = "off"
	LogUploadInterval LogUploadMode = "interval"
	LogUploadDaily    LogUploadMode = "daily"
)

// LogStream names a log that can be uploaded; the names are the uplink stream suffixes after
// "log/".
type LogStream string

// Log streams.
const (
	LogStreamECR   LogStream = "ecr"
	LogStreamPOS   LogStream = "pos"
	LogStreamAudit LogStream = "audit"
	LogStreamAgent LogStream = "agent"
)

// TimeWindow is a daily window in terminal local time, "HH:MM" to "HH:MM"; End before Start
// crosses midnight. Both empty means no restriction.
type TimeWindow struct {
	Start string `cbor:"start,omitempty" json:"start,omitempty"`
	End   string `cbor:"end,omitempty" json:"end,omitempty"`
}

// Contains reports whether minute-of-day m (0..1439) lies in the window. An empty or invalid
// window contains every minute.
func (w TimeWindow) Contains(m int) bool {
	s, okS := parseHHMM(w.Start)
	e, okE := parseHHMM(w.End)
	if !okS || !okE || s == e {
		return true
	}
	if s < e {
		return m >= s && m < e
	}
	return m >= s || m < e
}

// AcquirerProfile is the acquirer and how the terminal reaches it.
type AcquirerProfile struct {
	Name                 string   `cbor:"name,omitempty" json:"name,omitempty"`
	AcquirerID           string   `cbor:"acquirerId,omitempty" json:"acquirerId,omitempty"`
	MerchantCategoryCode string   `cbor:"merchantCategoryCode,omitempty" json:"merchantCategoryCode,omitempty"`
	Protocol             Protocol `cbor:"protocol,omitempty" json:"protocol,omitempty"`
	Bearers              []Bearer `cbor:"bearers,omitempty" json:"bearers,omitempty"`
	// DNSServers exist because Android has no /etc/resolv.conf for a cgo-less Go resolver.
	DNSServers           []string `cbor:"dnsServers,omitempty" json:"dnsServers,omitempty"`
	MobileAPN            string   `cbor:"mobileApn,omitempty" json:"mobileApn,omitempty"`
	PersistentConnection bool     `cbor:"persistentConnection,omitempty" json:"persistentConnection,omitempty"`
}

// Protocol is the host message protocol.
type Protocol string

// ProtocolCUP is ISO 8583 in the UnionPay direct-connect POS profile (Q/CUP 007).
const ProtocolCUP Protocol = "cupIso8583"

// Bearer is a network link kind, in the order the terminal should try them.
type Bearer string

// Bearers.
const (
	BearerEthernet Bearer = "ethernet"
	BearerWiFi     Bearer = "wifi"
	BearerMobile   Bearer = "mobile"
)

// ContactlessProfile holds the reader-wide contactless limits (amounts in minor units).
type ContactlessProfile struct {
	Enabled          bool   `cbor:"enabled,omitempty" json:"enabled,omitempty"`
	TransactionLimit uint64 `cbor:"transactionLimit,omitempty" json:"transactionLimit,omitempty"`
	CVMRequiredLimit uint64 `cbor:"cvmRequiredLimit,omitempty" json:"cvmRequiredLimit,omitempty"`
	FloorLimit       uint64 `cbor:"floorLimit,omitempty" json:"floorLimit,omitempty"`
	TTQ              string `cbor:"ttq,omitempty" json:"ttq,omitempty"`
	MobileWallets    bool   `cbor:"mobileWallets,omitempty" json:"mobileWallets,omitempty"`
}

// AuthHost is the authorisation host (ISO 8583) and the identity the terminal has there.
type AuthHost struct {
	// Addresses are tried in order; empty means the terminal has no host yet.
	Addresses         []string `cbor:"addresses,omitempty" json:"addresses,omitempty"`
	TLS               bool     `cbor:"tls,omitempty" json:"tls,omitempty"`
	ServerName        string   `cbor:"serverName,omitempty" json:"serverName,omitempty"`
	CACertificate     string   `cbor:"caCertificate,omitempty" json:"caCertificate,omitempty"`
	ClientCertificate string   `cbor:"clientCertificate,omitempty" json:"clientCertificate,omitempty"`
	ConnectTimeoutSec uint16   `cbor:"connectTimeoutSec,omitempty" json:"connectTimeoutSec,omitempty"`
	ConnectRetries    uint8    `cbor:"connectRetries,omitempty" json:"connectRetries,omitempty"`
	TPDU              string   `cbor:"tpdu,omitempty" json:"tpdu,omitempty"`
	NII               string   `cbor:"nii,omitempty" json:"nii,omitempty"`
	TerminalID        string   `cbor:"terminalId,omitempty" json:"terminalId,omitempty"`
	MerchantID        string   `cbor:"merchantId,omitempty" json:"merchantId,omitempty"`
	MerchantName      string   `cbor:"merchantName,omitempty" json:"merchantName,omitempty"`
}

// Configured reports whether a host is set up at all.
func (h AuthHost) Configured() bool { return len(h.Addresses) > 0 }

// Currency is an ISO 4217 currency the terminal accepts.
type Currency struct {
	Numeric  string `cbor:"numeric,omitempty" json:"numeric,omitempty"`
	Alpha    string `cbor:"alpha,omitempty" json:"alpha,omitempty"`
	Exponent uint8  `cbor:"exponent,omitempty" json:"exponent,omitempty"`
	// Default marks the transaction currency (EMV 5F2A, field 49); exactly one has it.
	Default bool `cbor:"default,omitempty" json:"default,omitempty"`
}

// BINRange maps card number prefixes to a scheme and a region. Low and High are prefixes of
// equal length; a PAN belongs to the range when its first len(Low) digits lie in [Low, High].
type BINRange struct {
	Low    string `cbor:"low,omitempty" json:"low,omitempty"`
	High   string `cbor:"high,omitempty" json:"high,omitempty"`
	Scheme Scheme `cbor:"scheme,omitempty" json:"scheme,omitempty"`
	Region Region `cbor:"region,omitempty" json:"region,omitempty"`
}

// Scheme is a card scheme.
type Scheme string

// Card schemes.
const (
	SchemeVisa       Scheme = "visa"
	SchemeMastercard Scheme = "mastercard"
	SchemeUnionPay   Scheme = "unionpay"
	SchemeMir        Scheme = "mir"
	SchemeAmex       Scheme = "amex"
	SchemeJCB        Scheme = "jcb"
	SchemeDiscover   Scheme = "discover"
	SchemeLocal      Scheme = "local"
)

// Region separates domestic from foreign cards; settlement totals are kept per region (host
// spec, batch settlement).
type Region string

// Regions.
const (
	RegionDomestic Region = "domestic"
	RegionForeign  Region = "foreign"
)

// QRHost is a QR payment provider.
type QRHost struct {
	Name            string `cbor:"name,omitempty" json:"name,omitempty"`
	URL             string `cbor:"url,omitempty" json:"url,omitempty"`
	MerchantID      string `cbor:"merchantId,omitempty" json:"merchantId,omitempty"`
	CACertificate   string `cbor:"caCertificate,omitempty" json:"caCertificate,omitempty"`
	QRLifetimeSec   uint16 `cbor:"qrLifetimeSec,omitempty" json:"qrLifetimeSec,omitempty"`
	PollIntervalSec uint16 `cbor:"pollIntervalSec,omitempty" json:"pollIntervalSec,omitempty"`
}

// DynamicLimit is a set of dynamic reader limits: contactless limits chosen by the
// Application Program ID (EMV 9F5A) the card presents, overriding the reader-wide ones.
type DynamicLimit struct {
	ProgramID         string `cbor:"programId,omitempty" json:"programId,omitempty"`
	TransactionLimit  uint64 `cbor:"transactionLimit,omitempty" json:"transactionLimit,omitempty"`
	CVMRequiredLimit  uint64 `cbor:"cvmRequiredLimit,omitempty" json:"cvmRequiredLimit,omitempty"`
	FloorLimit        uint64 `cbor:"floorLimit,omitempty" json:"floorLimit,omitempty"`
	StatusCheck       bool   `cbor:"statusCheck,omitempty" json:"statusCheck,omitempty"`
	ZeroAmountAllowed bool   `cbor:"zeroAmountAllowed,omitempty" json:"zeroAmountAllowed,omitempty"`
}

// EMVSpecialRule changes EMV processing for cards whose AID starts with AID.
type EMVSpecialRule struct {
	AID               string `cbor:"aid,omitempty" json:"aid,omitempty"`
	ForceOnline       bool   `cbor:"forceOnline,omitempty" json:"forceOnline,omitempty"`
	PINBypassAllowed  bool   `cbor:"pinBypassAllowed,omitempty" json:"pinBypassAllowed,omitempty"`
	SignatureRequired bool   `cbor:"signatureRequired,omitempty" json:"signatureRequired,omitempty"`
	DenyFallback      bool   `cbor:"denyFallback,omitempty" json:"denyFallback,omitempty"`
}

// PrintProfile shapes receipts.
type PrintProfile struct {
	Language      Language `cbor:"language,omitempty" json:"language,omitempty"`
	StoreName     string   `cbor:"storeName,omitempty" json:"storeName,omitempty"`
	City          string   `cbor:"city,omitempty" json:"city,omitempty"`
	Address       string   `cbor:"address,omitempty" json:"address,omitempty"`
	TaxID         string   `cbor:"taxId,omitempty" json:"taxId,omitempty"`
	HeaderLines   []string `cbor:"headerLines,omitempty" json:"headerLines,omitempty"`
	FooterLines   []string `cbor:"footerLines,omitempty" json:"footerLines,omitempty"`
	MerchantCopy  CopyMode `cbor:"merchantCopy,omitempty" json:"merchantCopy,omitempty"`
	CustomerCopy  CopyMode `cbor:"customerCopy,omitempty" json:"customerCopy,omitempty"`
	PrintDeclined bool     `cbor:"printDeclined,omitempty" json:"printDeclined,omitempty"`
}

// Language of receipts and terminal screens.
type Language string

// Languages.
const (
	LanguageRussian Language = "ru"
	LanguageKazakh  Language = "kk"
	LanguageChinese Language = "zh"
	LanguageEnglish Language = "en"
)

// CopyMode says how a receipt copy is delivered.
type CopyMode string

// Copy modes. Electronic and both apply to the merchant copy (sent on up/receipt); ask and none
// to the customer copy.
const (
	CopyPrint      CopyMode = "print"
	CopyElectronic CopyMode = "electronic"
	CopyBoth       CopyMode = "both"
	CopyAsk        CopyMode = "ask"
	CopyNone       CopyMode = "none"
)

// Operation names an operation of the host and ECR specifications.
type Operation string

// Operations. The names follow the ECR API endpoints where one exists.
const (
	OpPayment               Operation = "payment"               // host purchase 0200, 00xxxx
	OpVoid                  Operation = "void"                  // purchase void, same batch
	OpRefund                Operation = "refund"                // 0220, after settlement
	OpPreAuth               Operation = "preAuth"               // 0100, condition 06
	OpPreAuthVoid           Operation = "preAuthVoid"           // 0100
	OpPreAuthCompletion     Operation = "preAuthCompletion"     // 0200
	OpPreAuthCompletionVoid Operation = "preAuthCompletionVoid" // 0200
	OpBalance               Operation = "balance"               // 0200, 31xxxx
	OpOfflineSale           Operation = "offlineSale"           // offline settlement 0220
	OpTipAdjust             Operation = "tipAdjust"             // settlement adjustment 0220
	OpSettlement            Operation = "settlement"            // 0500 (+0320 upload)
	OpEmergencyCancel       Operation = "emergencyCancel"       // reversal of the last operation
	OpTopUp                 Operation = "topUp"                 // account top-up
	OpCashWithdrawal        Operation = "cashWithdrawal"        // cash out
	OpReadCard              Operation = "readCard"              // read card data, no host
	OpReceiptCopy           Operation = "receiptCopy"           // local
	OpFullReport            Operation = "fullReport"            // local
	OpShortReport           Operation = "shortReport"           // local
	OpEchoTest              Operation = "echoTest"              // 0820 connection check
)

var operations = []Operation{
	OpPayment, OpVoid, OpRefund, OpPreAuth, OpPreAuthVoid, OpPreAuthCompletion,
	OpPreAuthCompletionVoid, OpBalance, OpOfflineSale, OpTipAdjust, OpSettlement,
	OpEmergencyCancel, OpTopUp, OpCashWithdrawal, OpReadCard, OpReceiptCopy, OpFullReport,
	OpShortReport, OpEchoTest,
}

// Operations lists every operation name the document may use.
func Operations() []Operation { return append([]Operation(nil), operations...) }

// NeedsHost reports whether the operation talks to the authorisation host.
func (op Operation) NeedsHost() bool {
	switch op {
	case OpReadCard, OpReceiptCopy, OpFullReport, OpShortReport:
		return false
	}
	return true
}

// CertificateRef names a certificate delivered by cert.put and pins it by fingerprint, so the
// document says which certificate to use without carrying it.
type CertificateRef struct {
	Name   string    `cbor:"name,omitempty" json:"name,omitempty"`
	SHA256 string    `cbor:"sha256,omitempty" json:"sha256,omitempty"`
	Usage  CertUsage `cbor:"usage,omitempty" json:"usage,omitempty"`
}

// CertUsage is what a certificate is for.
type CertUsage string

// Certificate usages.
const (
	CertCA     CertUsage = "ca"     // trust anchor for a server the terminal connects to
	CertClient CertUsage = "client" // terminal's TLS client certificate
	CertServer CertUsage = "server" // terminal's TLS server certificate (ECR protected mode)
)

// EMVApplication is a supported EMV application (AID) and its terminal parameters. Amounts are
// in minor units. Empty TAC fields fall back to the document's terminalActionCodes.
type EMVApplication struct {
	AID              string `cbor:"aid,omitempty" json:"aid,omitempty"`
	Label            string `cbor:"label,omitempty" json:"label,omitempty"`
	Priority         uint8  `cbor:"priority,omitempty" json:"priority,omitempty"`
	PartialSelection bool   `cbor:"partialSelection,omitempty" json:"partialSelection,omitempty"`
	AppVersion       string `cbor:"appVersion,omitempty" json:"appVersion,omitempty"`
	Contact          bool   `cbor:"contact,omitempty" json:"contact,omitempty"`
	Contactless      bool   `cbor:"contactless,omitempty" json:"contactless,omitempty"`
	Kernel           uint8  `cbor:"kernel,omitempty" json:"kernel,omitempty"`
	FloorLimit       uint64 `cbor:"floorLimit,omitempty" json:"floorLimit,omitempty"`
	Threshold        uint64 `cbor:"threshold,omitempty" json:"threshold,omitempty"`
	TargetPercent    uint8  `cbor:"targetPercent,omitempty" json:"targetPercent,omitempty"`
	MaxTargetPercent uint8  `cbor:"maxTargetPercent,omitempty" json:"maxTargetPercent,omitempty"`
	TACDenial        string `cbor:"tacDenial,omitempty" json:"tacDenial,omitempty"`
	TACOnline        string `cbor:"tacOnline,omitempty" json:"tacOnline,omitempty"`
	TACDefault       string `cbor:"tacDefault,omitempty" json:"tacDefault,omitempty"`
	DefaultDDOL      string `cbor:"defaultDdol,omitempty" json:"defaultDdol,omitempty"`
	DefaultTDOL      string `cbor:"defaultTdol,omitempty" json:"defaultTdol,omitempty"`
}

// ActionCodes are Terminal Action Codes (5 bytes each, as 10 hex digits).
type ActionCodes struct {
	Denial  string `cbor:"denial,omitempty" json:"denial,omitempty"`
	Online  string `cbor:"online,omitempty" json:"online,omitempty"`
	Default string `cbor:"default,omitempty" json:"default,omitempty"`
}

// TACs returns the application's action codes, each falling back to the document-wide one.
func (d *Document) TACs(app EMVApplication) ActionCodes {
	tac := d.TerminalActionCodes
	if app.TACDenial != "" {
		tac.Denial = app.TACDenial
	}
	if app.TACOnline != "" {
		tac.Online = app.TACOnline
	}
	if app.TACDefault != "" {
		tac.Default = app.TACDefault
	}
	return tac
}

// PaymentParameters tune the customer-facing flow of a payment.
type PaymentParameters struct {
	PresentTimeoutSec    uint16 `cbor:"presentTimeoutSec,omitempty" json:"presentTimeoutSec,omitempty"`
	ConfirmTimeoutSec    uint16 `cbor:"confirmTimeoutSec,omitempty" json:"confirmTimeoutSec,omitempty"`
	PINEntryTimeoutSec   uint16 `cbor:"pinEntryTimeoutSec,omitempty" json:"pinEntryTimeoutSec,omitempty"`
	PartialRefundAllowed bool   `cbor:"partialRefundAllowed,omitempty" json:"partialRefundAllowed,omitempty"`
	RefundWindowDays     uint16 `cbor:"refundWindowDays,omitempty" json:"refundWindowDays,omitempty"`
	MagstripeFallback    bool   `cbor:"magstripeFallback,omitempty" json:"magstripeFallback,omitempty"`
	ChipAttempts         uint8  `cbor:"chipAttempts,omitempty" json:"chipAttempts,omitempty"`
}

// PaymentProfile holds fees and limits. Amounts are in minor units; a zero limit means none.
type PaymentProfile struct {
	MinAmount        uint64 `cbor:"minAmount,omitempty" json:"minAmount,omitempty"`
	MaxAmount        uint64 `cbor:"maxAmount,omitempty" json:"maxAmount,omitempty"`
	DailyAmountLimit uint64 `cbor:"dailyAmountLimit,omitempty" json:"dailyAmountLimit,omitempty"`
	DailyCountLimit  uint32 `cbor:"dailyCountLimit,omitempty" json:"dailyCountLimit,omitempty"`
	Fees             []Fee  `cbor:"fees,omitempty" json:"fees,omitempty"`
}

// Fee is a fee charged on an operation paid by a method: PercentBP basis points of the amount
// plus Fixed, clamped to [Min, Max] (Max 0 = no cap).
type Fee struct {
	Operation Operation `cbor:"operation,omitempty" json:"operation,omitempty"`
	Method    Method    `cbor:"method,omitempty" json:"method,omitempty"`
	PercentBP uint16    `cbor:"percentBp,omitempty" json:"percentBp,omitempty"`
	Fixed     uint64    `cbor:"fixed,omitempty" json:"fixed,omitempty"`
	Min       uint64    `cbor:"min,omitempty" json:"min,omitempty"`
	Max       uint64    `cbor:"max,omitempty" json:"max,omitempty"`
}

// Method is a payment method.
type Method string

// Payment methods, as in the ECR API's "method".
const (
	MethodCard Method = "card"
	MethodQR   Method = "qr"
)

// TerminalCapabilities are the EMV terminal data objects describing the device.
type TerminalCapabilities struct {
	Capabilities           string `cbor:"capabilities,omitempty" json:"capabilities,omitempty"`
	AdditionalCapabilities string `cbor:"additionalCapabilities,omitempty" json:"additionalCapabilities,omitempty"`
	TerminalType           string `cbor:"terminalType,omitempty" json:"terminalType,omitempty"`
}

// HostParameters are the downloaded, settable and online-changeable parameters of the host
// specification (seed 004 §6.1.3) that are not identity or addressing (those live in AuthHost).
type HostParameters struct {
	ResponseTimeoutSec   uint16            `cbor:"responseTimeoutSec,omitempty" json:"responseTimeoutSec,omitempty"`
	ResendCount          uint8             `cbor:"resendCount,omitempty" json:"resendCount,omitempty"`
	TipsEnabled          bool              `cbor:"tipsEnabled,omitempty" json:"tipsEnabled,omitempty"`
	TipMaxPercent        uint8             `cbor:"tipMaxPercent,omitempty" json:"tipMaxPercent,omitempty"`
	ManualPANEntry       bool              `cbor:"manualPanEntry,omitempty" json:"manualPanEntry,omitempty"`
	AutoSignOff          bool              `cbor:"autoSignOff,omitempty" json:"autoSignOff,omitempty"`
	AutoSettleAt         string            `cbor:"autoSettleAt,omitempty" json:"autoSettleAt,omitempty"`
	OfflineUploadMode    OfflineUploadMode `cbor:"offlineUploadMode,omitempty" json:"offlineUploadMode,omitempty"`
	MasterKeyIndex       uint8             `cbor:"masterKeyIndex,omitempty" json:"masterKeyIndex,omitempty"`
	MaxRefundAmount      uint64            `cbor:"maxRefundAmount,omitempty" json:"maxRefundAmount,omitempty"`
	SwipeRequiredForVoid bool              `cbor:"swipeRequiredForVoid,omitempty" json:"swipeRequiredForVoid,omitempty"`
	PINRequiredForVoid   bool              `cbor:"pinRequiredForVoid,omitempty" json:"pinRequiredForVoid,omitempty"`
	MaxBatchSize         uint32            `cbor:"maxBatchSize,omitempty" json:"maxBatchSize,omitempty"`
	MaxLogCount          uint32            `cbor:"maxLogCount,omitempty" json:"maxLogCount,omitempty"`
	PINLengthMin         uint8             `cbor:"pinLengthMin,omitempty" json:"pinLengthMin,omitempty"`
	PINLengthMax         uint8             `cbor:"pinLengthMax,omitempty" json:"pinLengthMax,omitempty"`
	TestMode             bool              `cbor:"testMode,omitempty" json:"testMode,omitempty"`
}

// OfflineUploadMode says when offline transactions (offline sale, tip adjustment) go up.
type OfflineUploadMode string

// Offline upload modes.
const (
	OfflineUploadNextOnline OfflineUploadMode = "nextOnline" // before the next online request
	OfflineUploadSettlement OfflineUploadMode = "settlement" // only at batch settlement
)

// MasterKeySlots is the number of terminal master key slots masterKeyIndex can select.
const MasterKeySlots = 10

// MinBatchSize is the least batch capacity the host specification allows (seed 004 §3.5).
const MinBatchSize = 300

// ECRSettings are the cash-register API switches an administrator sets (seed 003 §4.7).
type ECRSettings struct {
	IntegrationOnly    bool     `cbor:"integrationOnly,omitempty" json:"integrationOnly,omitempty"`
	QROnly             bool     `cbor:"qrOnly,omitempty" json:"qrOnly,omitempty"`
	ShowTerminalNumber bool     `cbor:"showTerminalNumber,omitempty" json:"showTerminalNumber,omitempty"`
	ShortReport        bool     `cbor:"shortReport,omitempty" json:"shortReport,omitempty"`
	ProtectedMode      bool     `cbor:"protectedMode,omitempty" json:"protectedMode,omitempty"`
	ServerCertificate  string   `cbor:"serverCertificate,omitempty" json:"serverCertificate,omitempty"`
	Port               uint16   `cbor:"port,omitempty" json:"port,omitempty"`
	AllowedNetworks    []string `cbor:"allowedNetworks,omitempty" json:"allowedNetworks,omitempty"`
	// CollectTimeoutSec is how long a successful card operation waits for its cash register
	// to collect the result before the terminal reverses it (seed 002); 0: 180 s.
	CollectTimeoutSec uint16 `cbor:"collectTimeoutSec,omitempty" json:"collectTimeoutSec,omitempty"`
}

// Allows reports whether op is among the allowed operations.
func (d *Document) Allows(op Operation) bool {
	for _, a := range d.AllowedOperations {
		if a == op {
			return true
		}
	}
	return false
}

// DefaultCurrency returns the transaction currency.
func (d *Document) DefaultCurrency() (Currency, bool) {
	for _, c := range d.Currencies {
		if c.Default {
			return c, true
		}
	}
	return Currency{}, false
}

// LookupBIN returns the BIN range a card number belongs to. Ranges of a valid document do not
// overlap, so at most one matches.
func (d *Document) LookupBIN(pan string) (BINRange, bool) {
	for _, r := range d.BINRanges {
		n := len(r.Low)
		if n == 0 || len(pan) < n || !isDigits(pan[:n]) {
			continue
		}
		p := pan[:n]
		// Equal-length digit strings compare like the numbers they spell.
		if p >= r.Low && p <= r.High {
			return r, true
		}
	}
	return BINRange{}, false
}

// Application returns the EMV application with the given AID (hex, any case).
func (d *Document) Application(aid string) (EMVApplication, bool) {
	for _, a := range d.EMVApplications {
		if strings.EqualFold(a.AID, aid) {
			return a, true
		}
	}
	return EMVApplication{}, false
}
