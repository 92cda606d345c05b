package termconfig

// Default returns the factory configuration: version 0, no host, no operation allowed. A
// terminal out of the box keeps its TMS link and hardware working and takes no payment until
// the TMS sends a real document.
func Default() *Document {
	return &Document{
		Version: 0,
		CashierProfile: CashierProfile{
			OperatorLogin:       false,
			SessionTimeoutSec:   300,
			MaxOperators:        10,
			PasswordMinLength:   4,
			MaxPasswordAttempts: 3,
			SupervisorApproval:  []Operation{OpRefund, OpVoid},
		},
		TMS: TMSParameters{
			StatsIntervalSec: 3600,
			KeepaliveSec:     300,
			ReconnectMinSec:  5,
			ReconnectMaxSec:  300,
			LogUpload: LogUploadSchedule{
				Mode:    LogUploadDaily,
				DailyAt: "03:00",
				Streams: []LogStream{LogStreamECR, LogStreamPOS, LogStreamAudit},
			},
			MaintenanceWindow:   TimeWindow{Start: "02:00", End: "05:00"},
			UpdatesOnlyInWindow: true,
		},
		AcquirerProfile: AcquirerProfile{
			Protocol: ProtocolCUP,
			Bearers:  []Bearer{BearerEthernet, BearerWiFi, BearerMobile},
		},
		ContactlessProfile: ContactlessProfile{
			Enabled:          true,
			TransactionLimit: 100_000_000,
			CVMRequiredLimit: 2_000_000,
			FloorLimit:       0,
			TTQ:              "36004000",
			MobileWallets:    true,
		},
		AuthHost: AuthHost{
			TLS:               true,
			ConnectTimeoutSec: 10,
			ConnectRetries:    2,
		},
		Currencies:  []Currency{{Numeric: "398", Alpha: "KZT", Exponent: 2, Default: true}},
		CountryCode: "398",
		PrintProfile: PrintProfile{
			Language:      LanguageRussian,
			MerchantCopy:  CopyPrint,
			CustomerCopy:  CopyPrint,
			PrintDeclined: true,
		},
		EMVApplications: []EMVApplication{
			defaultApp("A0000000031010", "VISA", 1, "008C", 3),
			defaultApp("A0000000041010", "MASTERCARD", 2, "0002", 2),
			defaultApp("A000000333010101", "UnionPay Debit", 3, "0030", 7),
			defaultApp("A000000333010102", "UnionPay Credit", 4, "0030", 7),
		},
		TerminalActionCodes: ActionCodes{
			Denial:  "0010000000",
			Online:  "DC4004F800",
			Default: "DC4000A800",
		},
		PaymentParameters: PaymentParameters{
			PresentTimeoutSec:    180,
			ConfirmTimeoutSec:    60,
			PINEntryTimeoutSec:   60,
			PartialRefundAllowed: true,
			RefundWindowDays:     30,
			MagstripeFallback:    true,
			ChipAttempts:         3,
		},
		TerminalCapabilities: TerminalCapabilities{
			Capabilities:           "E0F8C8",
			AdditionalCapabilities: "6000F0A001",
			TerminalType:           "22",
		},
		HostParameters: HostParameters{
			ResponseTimeoutSec: 60,
			ResendCount:        3,
			TipMaxPercent:      20,
			OfflineUploadMode:  OfflineUploadNextOnline,
			MaxBatchSize:       500,
			MaxLogCount:        1000,
			PINLengthMin:       4,
			PINLengthMax:       12,
		},
		ECR: ECRSettings{Port: 8080},
	}
}

func defaultApp(aid, label string, prio uint8, version string, kernel uint8) EMVApplication {
	return EMVApplication{
		AID:              aid,
		Label:            label,
		Priority:         prio,
		PartialSelection: true,
		AppVersion:       version,
		Contact:          true,
		Contactless:      true,
		Kernel:           kernel,
		DefaultDDOL:      "9F3704",
	}
}
