package termconfig

import (
	"slices"
	"strings"
	"testing"
)

func TestDefaultAndExampleAreValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("factory document: %v", err)
	}
	if err := example(t).Validate(); err != nil {
		t.Fatalf("example document: %v", err)
	}
	for _, v := range []uint64{1, 39, 40, 1000} {
		if err := docFor(t, v).Validate(); err != nil {
			t.Fatalf("docFor(%d): %v", v, err)
		}
	}
}

func TestValidateViolations(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(d *Document)
		want   []string
	}{
		{"version zero is factory only", func(d *Document) { d.Version = 0 }, []string{"version"}},
		{"session timeout", func(d *Document) { d.CashierProfile.SessionTimeoutSec = 5 }, []string{"cashierProfile.sessionTimeoutSec"}},
		{"too few operators", func(d *Document) { d.CashierProfile.MaxOperators = 9 }, []string{"cashierProfile.maxOperators"}},
		{"password length", func(d *Document) { d.CashierProfile.PasswordMinLength = 13 }, []string{"cashierProfile.passwordMinLength"}},
		{"supervisor ops", func(d *Document) {
			d.CashierProfile.SupervisorApproval = []Operation{"refund", "refund", "launchRocket"}
		}, []string{"cashierProfile.supervisorApproval[1]", "cashierProfile.supervisorApproval[2]"}},
		{"stats interval", func(d *Document) { d.TMS.StatsIntervalSec = 59 }, []string{"tms.statsIntervalSec"}},
		{"reconnect order", func(d *Document) { d.TMS.ReconnectMaxSec = 4 }, []string{"tms.reconnectMaxSec"}},
		{"log upload mode", func(d *Document) { d.TMS.LogUpload.Mode = "hourly" }, []string{"tms.logUpload.mode"}},
		{"log upload daily time", func(d *Document) { d.TMS.LogUpload.DailyAt = "24:00" }, []string{"tms.logUpload.dailyAt"}},
		{"log upload interval", func(d *Document) {
			d.TMS.LogUpload = LogUploadSchedule{Mode: LogUploadInterval, IntervalSec: 60}
		}, []string{"tms.logUpload.intervalSec", "tms.logUpload.streams"}},
		{"log streams", func(d *Document) {
			d.TMS.LogUpload.Streams = []LogStream{"ecr", "kernel", "ecr"}
		}, []string{"tms.logUpload.streams[1]", "tms.logUpload.streams[2]"}},
		{"window half set", func(d *Document) { d.TMS.MaintenanceWindow.End = "" }, []string{"tms.maintenanceWindow.end"}},
		{"window empty", func(d *Document) { d.TMS.MaintenanceWindow.Start = "05:00" }, []string{"tms.maintenanceWindow"}},
		{"window format", func(d *Document) { d.TMS.MaintenanceWindow.Start = "2:00" }, []string{"tms.maintenanceWindow.start"}},
		{"updates without window", func(d *Document) { d.TMS.MaintenanceWindow = TimeWindow{} }, []string{"tms.updatesOnlyInWindow"}},
		{"acquirer ids", func(d *Document) {
			d.AcquirerProfile.AcquirerID = "123456789012"
			d.AcquirerProfile.MerchantCategoryCode = "54a1"
		}, []string{"acquirerProfile.acquirerId", "acquirerProfile.merchantCategoryCode"}},
		{"protocol", func(d *Document) { d.AcquirerProfile.Protocol = "iso8583-1987" }, []string{"acquirerProfile.protocol"}},
		{"bearers", func(d *Document) {
			d.AcquirerProfile.Bearers = []Bearer{"mobile", "satellite", "mobile"}
		}, []string{"acquirerProfile.bearers[1]", "acquirerProfile.bearers[2]"}},
		{"no bearer", func(d *Document) { d.AcquirerProfile.Bearers = nil }, []string{"acquirerProfile.bearers"}},
		{"dns", func(d *Document) {
			d.AcquirerProfile.DNSServers = []string{"8.8.8.8", "dns.example", "8.8.8.8"}
		}, []string{"acquirerProfile.dnsServers[1]", "acquirerProfile.dnsServers[2]"}},
		{"too many dns", func(d *Document) {
			d.AcquirerProfile.DNSServers = []string{"1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9"}
		}, []string{"acquirerProfile.dnsServers"}},
		{"apn", func(d *Document) { d.AcquirerProfile.MobileAPN = "pos\n" }, []string{"acquirerProfile.mobileApn"}},
		{"contactless limits", func(d *Document) {
			d.ContactlessProfile.CVMRequiredLimit = d.ContactlessProfile.TransactionLimit + 1
			d.ContactlessProfile.FloorLimit = d.ContactlessProfile.TransactionLimit + 1
		}, []string{"contactlessProfile.cvmRequiredLimit", "contactlessProfile.floorLimit"}},
		{"ttq", func(d *Document) { d.ContactlessProfile.TTQ = "3600400" }, []string{"contactlessProfile.ttq"}},
		{"contactless without apps", func(d *Document) {
			for i := range d.EMVApplications {
				d.EMVApplications[i].Contactless = false
			}
		}, []string{"contactlessProfile.enabled"}},
		{"addresses", func(d *Document) {
			d.AuthHost.Addresses = []string{"host1.acq.example:5001", "10.20.0.5", "h:0", "-bad-.example:1", "HOST1.acq.example:5001"}
		}, []string{"authHost.addresses[1]", "authHost.addresses[2]", "authHost.addresses[3]", "authHost.addresses[4]"}},
		{"too many addresses", func(d *Document) {
			d.AuthHost.Addresses = slices.Repeat([]string{"h:1"}, 9)
		}, []string{"authHost.addresses"}},
		{"tls needs ca", func(d *Document) { d.AuthHost.CACertificate = "" }, []string{"authHost.caCertificate"}},
		{"unknown ca", func(d *Document) { d.AuthHost.CACertificate = "nope" }, []string{"authHost.caCertificate"}},
		{"wrong usage", func(d *Document) { d.AuthHost.ClientCertificate = "acq-root" }, []string{"authHost.clientCertificate"}},
		{"server name", func(d *Document) { d.AuthHost.ServerName = "bad name" }, []string{"authHost.serverName"}},
		{"connect", func(d *Document) {
			d.AuthHost.ConnectTimeoutSec = 0
			d.AuthHost.ConnectRetries = 10
		}, []string{"authHost.connectRetries", "authHost.connectTimeoutSec"}},
		{"tpdu form", func(d *Document) { d.AuthHost.TPDU = "7000120000" }, []string{"authHost.tpdu"}},
		{"tpdu nii mismatch", func(d *Document) { d.AuthHost.NII = "013" }, []string{"authHost.tpdu"}},
		{"nii form", func(d *Document) { d.AuthHost.NII = "12" }, []string{"authHost.nii"}},
		{"identity lengths", func(d *Document) {
			d.AuthHost.TerminalID = "1000001"
			d.AuthHost.MerchantID = "89811000000000\u00e9"
		}, []string{"authHost.merchantId", "authHost.terminalId"}},
		{"identity required", func(d *Document) {
			d.AuthHost.TPDU, d.AuthHost.NII, d.AuthHost.TerminalID, d.AuthHost.MerchantID = "", "", "", ""
		}, []string{"authHost.merchantId", "authHost.nii", "authHost.terminalId", "authHost.tpdu"}},
		{"merchant name", func(d *Document) { d.AuthHost.MerchantName = strings.Repeat("Я", 41) }, []string{"authHost.merchantName"}},
		{"no currency", func(d *Document) { d.Currencies = nil }, []string{"currencies"}},
		{"currency fields", func(d *Document) {
			d.Currencies = append(d.Currencies, Currency{Numeric: "39", Alpha: "kzt", Exponent: 5})
		}, []string{"currencies[2].alpha", "currencies[2].exponent", "currencies[2].numeric"}},
		{"currency duplicates and defaults", func(d *Document) {
			d.Currencies[1] = Currency{Numeric: "398", Alpha: "KZT", Exponent: 2, Default: true}
		}, []string{"currencies", "currencies[1].alpha", "currencies[1].numeric"}},
		{"bin range form", func(d *Document) {
			d.BINRanges = append(d.BINRanges,
				BINRange{Low: "9x", High: "99", Scheme: "visa", Region: "domestic"},
				BINRange{Low: "98", High: "970", Scheme: "visa", Region: "domestic"},
				BINRange{Low: "96", High: "95", Scheme: "visa", Region: "domestic"},
				BINRange{Low: "93", High: "93", Scheme: "diners", Region: "offshore"},
			)
		}, []string{"binRanges[4].low", "binRanges[5]", "binRanges[6]", "binRanges[7].region", "binRanges[7].scheme"}},
		{"bin overlap", func(d *Document) {
			d.BINRanges = append(d.BINRanges,
				BINRange{Low: "4400430000", High: "4400439999", Scheme: "visa", Region: "foreign"},
				BINRange{Low: "50", High: "51", Scheme: "mastercard", Region: "foreign"},
			)
		}, []string{"binRanges[4]", "binRanges[5]"}},
		{"country", func(d *Document) { d.CountryCode = "KZ" }, []string{"countryCode"}},
		{"qr host", func(d *Document) {
			d.QRHosts = append(d.QRHosts, QRHost{
				Name: "qr-main", URL: "http://user:pw@qr.example/", MerchantID: "",
				CACertificate: "ecr-server", QRLifetimeSec: 10, PollIntervalSec: 31,
			})
		}, []string{"qrHosts[1].caCertificate", "qrHosts[1].merchantId", "qrHosts[1].name",
			"qrHosts[1].pollIntervalSec", "qrHosts[1].qrLifetimeSec", "qrHosts[1].url"}},
		{"dynamic limits", func(d *Document) {
			d.DynamicLimits = append(d.DynamicLimits,
				DynamicLimit{ProgramID: "a1b2c3", TransactionLimit: 10, CVMRequiredLimit: 11},
				DynamicLimit{ProgramID: "ABC"},
			)
		}, []string{"dynamicLimits[1].cvmRequiredLimit", "dynamicLimits[1].programId", "dynamicLimits[2].programId"}},
		{"special processing", func(d *Document) {
			d.EMVSpecialProcessing = append(d.EMVSpecialProcessing,
				EMVSpecialRule{AID: "a000000333010102"}, EMVSpecialRule{AID: "A0000003"})
		}, []string{"emvSpecialProcessing[1].aid", "emvSpecialProcessing[2].aid"}},
		{"print profile", func(d *Document) {
			d.PrintProfile.Language = "de"
			d.PrintProfile.MerchantCopy = "ask"
			d.PrintProfile.CustomerCopy = "electronic"
			d.PrintProfile.TaxID = "12-34"
			d.PrintProfile.City = "Ал\tматы"
		}, []string{"printProfile.city", "printProfile.customerCopy", "printProfile.language",
			"printProfile.merchantCopy", "printProfile.taxId"}},
		{"print lines", func(d *Document) {
			d.PrintProfile.HeaderLines = slices.Repeat([]string{"x"}, 7)
			d.PrintProfile.FooterLines = []string{"ok", strings.Repeat("-", 49), "bad\xff"}
		}, []string{"printProfile.footerLines[1]", "printProfile.footerLines[2]", "printProfile.headerLines"}},
		{"operations", func(d *Document) {
			d.AllowedOperations = append(d.AllowedOperations, "payment", "teleport")
		}, []string{"allowedOperations[12]", "allowedOperations[13]"}},
		{"operations need host", func(d *Document) {
			d.AuthHost = AuthHost{ConnectTimeoutSec: 10}
			d.AllowedOperations = []Operation{OpPayment, OpReceiptCopy, OpSettlement}
		}, []string{"allowedOperations[0]", "allowedOperations[2]"}},
		{"qr only pays without host", func(d *Document) {
			d.AuthHost = AuthHost{ConnectTimeoutSec: 10}
			d.ECR.QROnly = true
			d.AllowedOperations = []Operation{OpPayment, OpRefund, OpVoid}
		}, []string{"allowedOperations[2]"}},
		{"certificates", func(d *Document) {
			d.Certificates = append(d.Certificates,
				CertificateRef{Name: "acq-root", SHA256: strings.Repeat("ab", 32), Usage: "ca"},
				CertificateRef{Name: "has space", SHA256: "abc", Usage: "signing"},
			)
		}, []string{"certificates[3].name", "certificates[4].name", "certificates[4].sha256", "certificates[4].usage"}},
		{"emv application fields", func(d *Document) {
			a := &d.EMVApplications[2]
			a.Label = ""
			a.Priority = 16
			a.AppVersion = "30"
			a.Kernel = 0
			a.Threshold = a.FloorLimit
			a.TargetPercent = 60
			a.TACOnline = "FC50"
			a.DefaultTDOL = "9F0"
		}, []string{"emvApplications[2].appVersion", "emvApplications[2].defaultTdol", "emvApplications[2].kernel",
			"emvApplications[2].label", "emvApplications[2].priority", "emvApplications[2].tacOnline",
			"emvApplications[2].targetPercent", "emvApplications[2].threshold"}},
		{"emv application ids", func(d *Document) {
			d.EMVApplications = append(d.EMVApplications,
				EMVApplication{AID: "a0000000031010", Label: "DUP", AppVersion: "0001", Contact: true},
				EMVApplication{AID: "A00000000", Label: "SHORT", AppVersion: "0001"},
			)
		}, []string{"emvApplications[3].aid", "emvApplications[4]", "emvApplications[4].aid"}},
		{"emv application max target", func(d *Document) { d.EMVApplications[2].MaxTargetPercent = 100 },
			[]string{"emvApplications[2].maxTargetPercent"}},
		{"action codes", func(d *Document) {
			d.TerminalActionCodes = ActionCodes{Denial: "001000000G", Online: "", Default: "DC4000A80000"}
		}, []string{"terminalActionCodes.default", "terminalActionCodes.denial", "terminalActionCodes.online"}},
		{"payment parameters", func(d *Document) {
			d.PaymentParameters = PaymentParameters{PresentTimeoutSec: 601, ConfirmTimeoutSec: 9, PINEntryTimeoutSec: 301}
		}, []string{"paymentParameters.chipAttempts", "paymentParameters.confirmTimeoutSec",
			"paymentParameters.pinEntryTimeoutSec", "paymentParameters.presentTimeoutSec", "paymentParameters.refundWindowDays"}},
		{"payment profile", func(d *Document) {
			d.PaymentProfile.MinAmount = d.PaymentProfile.MaxAmount + 1
			d.PaymentProfile.Fees = append(d.PaymentProfile.Fees,
				Fee{Operation: "payment", Method: "qr"},
				Fee{Operation: "bribe", Method: "cash", PercentBP: 10001, Min: 5, Max: 4},
			)
		}, []string{"paymentProfile.fees[1]", "paymentProfile.fees[2].method", "paymentProfile.fees[2].min",
			"paymentProfile.fees[2].operation", "paymentProfile.fees[2].percentBp", "paymentProfile.minAmount"}},
		{"capabilities", func(d *Document) {
			d.TerminalCapabilities = TerminalCapabilities{Capabilities: "E0F8C", AdditionalCapabilities: "6000F0A0010", TerminalType: "27"}
		}, []string{"terminalCapabilities.additionalCapabilities", "terminalCapabilities.capabilities", "terminalCapabilities.terminalType"}},
		{"host parameters", func(d *Document) {
			h := &d.HostParameters
			h.ResponseTimeoutSec = 4
			h.ResendCount = 10
			h.TipsEnabled = true
			h.AutoSettleAt = "23:60"
			h.OfflineUploadMode = "never"
			h.MasterKeyIndex = MasterKeySlots
			h.MaxBatchSize = 299
			h.MaxLogCount = 100001
			h.PINLengthMin = 3
			h.PINLengthMax = 13
		}, []string{"hostParameters.autoSettleAt", "hostParameters.masterKeyIndex", "hostParameters.maxBatchSize",
			"hostParameters.maxLogCount", "hostParameters.offlineUploadMode", "hostParameters.pinLengthMax",
			"hostParameters.pinLengthMin", "hostParameters.resendCount", "hostParameters.responseTimeoutSec",
			"hostParameters.tipMaxPercent"}},
		{"log below batch", func(d *Document) { d.HostParameters.MaxLogCount = 499 }, []string{"hostParameters.maxLogCount"}},
		{"ecr", func(d *Document) {
			d.ECR.Port = 0
			d.ECR.ProtectedMode = false
			d.ECR.AllowedNetworks = []string{"192.168.1.0/24", "192.168.1.7/24", "lan"}
		}, []string{"ecr.allowedNetworks[1]", "ecr.allowedNetworks[2]", "ecr.port", "ecr.serverCertificate"}},
		{"ecr server certificate usage", func(d *Document) { d.ECR.ServerCertificate = "qr-root" }, []string{"ecr.serverCertificate"}},
		{"qr only without qr hosts", func(d *Document) {
			d.ECR.QROnly = true
			d.QRHosts = nil
		}, []string{"ecr.qrOnly"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := example(t)
			tt.mutate(d)
			got := violationPaths(t, d.Validate())
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("violations at\n  %q\nwant\n  %q\n(%v)", got, want, d.Validate())
			}
		})
	}
}

func TestValidateReportsEveryViolation(t *testing.T) {
	d := example(t)
	d.Version = 0
	d.CountryCode = ""
	d.AuthHost.Addresses[1] = "nowhere"
	d.EMVApplications[0].AID = "zz"
	d.HostParameters.MaxBatchSize = 100
	d.ECR.Port = 0
	err := d.Validate()
	want := []string{"authHost.addresses[1]", "countryCode", "ecr.port", "emvApplications[0].aid",
		"hostParameters.maxBatchSize", "version"}
	if got := violationPaths(t, err); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	msg := err.Error()
	for _, p := range want {
		if !strings.Contains(msg, p+": ") {
			t.Errorf("error message does not name %s: %s", p, msg)
		}
	}
	if !strings.Contains(msg, "(6 violations)") {
		t.Errorf("error message does not count the violations: %s", msg)
	}
}

func TestOversizedListReportedOnce(t *testing.T) {
	tests := map[string]func(d *Document){
		"binRanges":                         func(d *Document) { d.BINRanges = slices.Repeat([]BINRange{{Low: "x"}}, maxBINRanges+1) },
		"allowedOperations":                 func(d *Document) { d.AllowedOperations = slices.Repeat([]Operation{"x"}, 20) },
		"cashierProfile.supervisorApproval": func(d *Document) { d.CashierProfile.SupervisorApproval = slices.Repeat([]Operation{OpVoid}, 4096) },
		"tms.logUpload.streams":             func(d *Document) { d.TMS.LogUpload.Streams = slices.Repeat([]LogStream{"ecr"}, 5) },
		"acquirerProfile.bearers":           func(d *Document) { d.AcquirerProfile.Bearers = slices.Repeat([]Bearer{"wifi"}, 4) },
		"emvApplications":                   func(d *Document) { d.EMVApplications = slices.Repeat(d.EMVApplications[:1], maxApplications+1) },
		"printProfile.headerLines":          func(d *Document) { d.PrintProfile.HeaderLines = slices.Repeat([]string{"\x00"}, 7) },
	}
	for want, mutate := range tests {
		d := example(t)
		mutate(d)
		if got := violationPaths(t, d.Validate()); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: got %q", want, got)
		}
	}
}

func TestLookupBIN(t *testing.T) {
	d := example(t)
	tests := []struct {
		pan    string
		scheme Scheme
		region Region
		ok     bool
	}{
		{"4400430000006389", SchemeVisa, RegionDomestic, true},
		{"4400440000006389", "", "", false},
		{"5399990000000000", SchemeMastercard, RegionForeign, true},
		{"5600000000000000", "", "", false},
		{"6212345678901234", SchemeUnionPay, RegionForeign, true},
		{"2204999999999999", SchemeMir, RegionForeign, true},
		{"2205000000000000", "", "", false},
		{"4", "", "", false},
		{"44004X0000006389", "", "", false},
	}
	for _, tt := range tests {
		r, ok := d.LookupBIN(tt.pan)
		if ok != tt.ok || r.Scheme != tt.scheme || r.Region != tt.region {
			t.Errorf("LookupBIN(%s) = %v %v, want %v %v %v", tt.pan, r, ok, tt.scheme, tt.region, tt.ok)
		}
	}
}

func TestAccessors(t *testing.T) {
	d := example(t)
	if cur, ok := d.DefaultCurrency(); !ok || cur.Alpha != "KZT" {
		t.Errorf("DefaultCurrency = %v %v", cur, ok)
	}
	if !d.Allows(OpRefund) || d.Allows(OpTopUp) {
		t.Errorf("Allows: refund %v, topUp %v", d.Allows(OpRefund), d.Allows(OpTopUp))
	}
	visa, ok := d.Application("a0000000031010")
	if !ok {
		t.Fatal("VISA application not found by lower-case AID")
	}
	if got := d.TACs(visa); got != d.TerminalActionCodes {
		t.Errorf("VISA TACs = %v, want the document defaults", got)
	}
	mc, _ := d.Application("A0000000041010")
	if got := d.TACs(mc); got != (ActionCodes{Denial: "0000000000", Online: "FC50BCF800", Default: "FC50BCA000"}) {
		t.Errorf("Mastercard TACs = %v", got)
	}
	for _, op := range Operations() {
		if !validOperation(op) {
			t.Errorf("listed operation %q is not valid", op)
		}
	}
}

func TestTimeWindowContains(t *testing.T) {
	overnight := TimeWindow{Start: "23:30", End: "05:00"}
	day := TimeWindow{Start: "09:00", End: "18:00"}
	tests := []struct {
		w    TimeWindow
		m    int
		want bool
	}{
		{overnight, 23*60 + 29, false},
		{overnight, 23*60 + 30, true},
		{overnight, 0, true},
		{overnight, 4*60 + 59, true},
		{overnight, 5 * 60, false},
		{day, 9 * 60, true},
		{day, 18 * 60, false},
		{day, 8 * 60, false},
		{TimeWindow{}, 123, true},
	}
	for _, tt := range tests {
		if got := tt.w.Contains(tt.m); got != tt.want {
			t.Errorf("%v.Contains(%d) = %v, want %v", tt.w, tt.m, got, tt.want)
		}
	}
}
