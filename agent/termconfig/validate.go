package termconfig

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Violation is one broken rule, at a path in the document's wire names, such as
// "authHost.addresses[1]".
type Violation struct {
	Path    string
	Message string
}

func (v Violation) String() string { return v.Path + ": " + v.Message }

// ValidationError lists every rule a document breaks, so the TMS operator can fix them all in
// one round instead of one per push.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "termconfig: invalid document (%d violations)", len(e.Violations))
	for i, v := range e.Violations {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	return b.String()
}

// List size limits. Together they keep an encoded document well under MaxDocumentSize, and a
// list over its limit is reported once instead of element by element.
const (
	maxAddresses      = 8
	maxDNSServers     = 4
	maxCurrencies     = 16
	maxBINRanges      = 1000
	maxQRHosts        = 8
	maxDynamicLimits  = 32
	maxSpecialRules   = 64
	maxPrintLines     = 6
	maxCertificates   = 32
	maxApplications   = 64
	maxFees           = 32
	maxNetworks       = 16
	maxPrintLineRunes = 48
)

var (
	nameRe      = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	taxIDRe     = regexp.MustCompile(`^[A-Za-z0-9]{1,20}$`)
	currAlphaRe = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Validate checks every rule of docs/terminal-config.md and reports all violations as a
// *ValidationError.
func (d *Document) Validate() error {
	c := &checker{}
	c.document(d)
	if len(c.violations) > 0 {
		return &ValidationError{Violations: c.violations}
	}
	return nil
}

type checker struct {
	violations []Violation
}

func (c *checker) add(path, format string, args ...any) {
	c.violations = append(c.violations, Violation{Path: path, Message: fmt.Sprintf(format, args...)})
}

func at(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// list reports a list over its limit and says whether its elements should be checked.
func (c *checker) list(path string, n, limit int) bool {
	if n > limit {
		c.add(path, "%d entries, at most %d allowed", n, limit)
		return false
	}
	return true
}

func (c *checker) document(d *Document) {
	if d.Version == 0 && !isFactory(d) {
		c.add("version", "must be > 0 (0 is reserved for the factory configuration)")
	}
	certs := c.certificates(d.Certificates)
	c.cashier(d.CashierProfile)
	c.tms(d.TMS)
	c.acquirer(d.AcquirerProfile)
	c.contactless(d)
	c.authHost(d.AuthHost, certs)
	c.currencies(d.Currencies)
	c.binRanges(d.BINRanges)
	if !isDigits(d.CountryCode) || len(d.CountryCode) != 3 {
		c.add("countryCode", "must be 3 digits (ISO 3166 numeric), got %q", d.CountryCode)
	}
	c.qrHosts(d.QRHosts, certs)
	c.dynamicLimits(d.DynamicLimits)
	c.specialRules(d.EMVSpecialProcessing)
	c.print(d.PrintProfile)
	c.allowedOperations(d)
	c.applications(d.EMVApplications)
	c.actionCodes(d.TerminalActionCodes)
	c.paymentParameters(d.PaymentParameters)
	c.paymentProfile(d.PaymentProfile)
	c.capabilities(d.TerminalCapabilities)
	c.hostParameters(d.HostParameters)
	c.ecr(d, certs)
	c.security(d.Security)
}

// isFactory reports whether d is exactly the factory document, the only one allowed to carry
// version 0.
func isFactory(d *Document) bool {
	a, errA := Encode(d)
	b, errB := Encode(Default())
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

func (c *checker) cashier(p CashierProfile) {
	const path = "cashierProfile."
	if p.SessionTimeoutSec != 0 && (p.SessionTimeoutSec < 30 || p.SessionTimeoutSec > 86400) {
		c.add(path+"sessionTimeoutSec", "must be 0 (never) or 30..86400, got %d", p.SessionTimeoutSec)
	}
	c.rangeU(path+"maxOperators", uint64(p.MaxOperators), 10, 100)
	c.rangeU(path+"passwordMinLength", uint64(p.PasswordMinLength), 4, 12)
	c.rangeU(path+"maxPasswordAttempts", uint64(p.MaxPasswordAttempts), 1, 10)
	c.operations(path+"supervisorApproval", p.SupervisorApproval)
}

func (c *checker) tms(t TMSParameters) {
	const path = "tms."
	c.rangeU(path+"statsIntervalSec", uint64(t.StatsIntervalSec), 60, 86400)
	c.rangeU(path+"keepaliveSec", uint64(t.KeepaliveSec), 10, 1200)
	c.rangeU(path+"reconnectMinSec", uint64(t.ReconnectMinSec), 1, 3600)
	if t.ReconnectMaxSec < t.ReconnectMinSec || t.ReconnectMaxSec > 3600 {
		c.add(path+"reconnectMaxSec", "must be reconnectMinSec (%d)..3600, got %d", t.ReconnectMinSec, t.ReconnectMaxSec)
	}

	lu := t.LogUpload
	switch lu.Mode {
	case LogUploadOff:
	case LogUploadInterval:
		c.rangeU(path+"logUpload.intervalSec", uint64(lu.IntervalSec), 300, 604800)
	case LogUploadDaily:
		if _, ok := parseHHMM(lu.DailyAt); !ok {
			c.add(path+"logUpload.dailyAt", "must be HH:MM, got %q", lu.DailyAt)
		}
	default:
		c.add(path+"logUpload.mode", "must be off, interval or daily, got %q", lu.Mode)
	}
	if lu.Mode != LogUploadOff && len(lu.Streams) == 0 {
		c.add(path+"logUpload.streams", "must name at least one log when uploads are scheduled")
	}
	seen := map[LogStream]bool{}
	if !c.list(path+"logUpload.streams", len(lu.Streams), 4) {
		lu.Streams = nil
	}
	for i, s := range lu.Streams {
		p := at(path+"logUpload.streams", i)
		switch {
		case s != LogStreamECR && s != LogStreamPOS && s != LogStreamAudit && s != LogStreamAgent:
			c.add(p, "unknown log %q (ecr, pos, audit, agent)", s)
		case seen[s]:
			c.add(p, "duplicate %q", s)
		}
		seen[s] = true
	}

	w := t.MaintenanceWindow
	switch {
	case w.Start == "" && w.End == "":
		if t.UpdatesOnlyInWindow {
			c.add(path+"updatesOnlyInWindow", "needs a maintenanceWindow")
		}
	case w.Start == "":
		c.add(path+"maintenanceWindow.start", "must be set when end is")
	case w.End == "":
		c.add(path+"maintenanceWindow.end", "must be set when start is")
	default:
		s, okS := parseHHMM(w.Start)
		e, okE := parseHHMM(w.End)
		if !okS {
			c.add(path+"maintenanceWindow.start", "must be HH:MM, got %q", w.Start)
		}
		if !okE {
			c.add(path+"maintenanceWindow.end", "must be HH:MM, got %q", w.End)
		}
		if okS && okE && s == e {
			c.add(path+"maintenanceWindow", "start and end must differ")
		}
	}
}

func (c *checker) acquirer(a AcquirerProfile) {
	const path = "acquirerProfile."
	c.text(path+"name", a.Name, 40)
	if a.AcquirerID != "" && (!isDigits(a.AcquirerID) || len(a.AcquirerID) > 11) {
		c.add(path+"acquirerId", "must be 1..11 digits, got %q", a.AcquirerID)
	}
	if a.MerchantCategoryCode != "" && (!isDigits(a.MerchantCategoryCode) || len(a.MerchantCategoryCode) != 4) {
		c.add(path+"merchantCategoryCode", "must be 4 digits, got %q", a.MerchantCategoryCode)
	}
	if a.Protocol != ProtocolCUP {
		c.add(path+"protocol", "must be %q, got %q", ProtocolCUP, a.Protocol)
	}
	if len(a.Bearers) == 0 {
		c.add(path+"bearers", "must name at least one bearer")
	}
	seen := map[Bearer]bool{}
	if !c.list(path+"bearers", len(a.Bearers), 3) {
		a.Bearers = nil
	}
	for i, b := range a.Bearers {
		p := at(path+"bearers", i)
		switch {
		case b != BearerEthernet && b != BearerWiFi && b != BearerMobile:
			c.add(p, "unknown bearer %q (ethernet, wifi, mobile)", b)
		case seen[b]:
			c.add(p, "duplicate %q", b)
		}
		seen[b] = true
	}
	if c.list(path+"dnsServers", len(a.DNSServers), maxDNSServers) {
		seenIP := map[netip.Addr]bool{}
		for i, s := range a.DNSServers {
			ip, err := netip.ParseAddr(s)
			switch {
			case err != nil || ip.Zone() != "":
				c.add(at(path+"dnsServers", i), "must be an IP address, got %q", s)
			case seenIP[ip]:
				c.add(at(path+"dnsServers", i), "duplicate %s", ip)
			}
			seenIP[ip] = true
		}
	}
	if len(a.MobileAPN) > 63 || !printableASCII(a.MobileAPN) {
		c.add(path+"mobileApn", "must be at most 63 printable ASCII characters")
	}
}

func (c *checker) contactless(d *Document) {
	const path = "contactlessProfile."
	p := d.ContactlessProfile
	if p.Enabled || p.TTQ != "" {
		c.hexLen(path+"ttq", p.TTQ, 8)
	}
	c.limits(path, p.TransactionLimit, p.CVMRequiredLimit, p.FloorLimit)
	if p.Enabled && !slices.ContainsFunc(d.EMVApplications, func(a EMVApplication) bool { return a.Contactless }) {
		c.add(path+"enabled", "needs at least one emvApplications entry with contactless")
	}
}

// limits checks a contactless limit set: nothing above the transaction limit (0 = none).
func (c *checker) limits(path string, txn, cvm, floor uint64) {
	if txn == 0 {
		return
	}
	if cvm > txn {
		c.add(path+"cvmRequiredLimit", "must not exceed transactionLimit (%d), got %d", txn, cvm)
	}
	if floor > txn {
		c.add(path+"floorLimit", "must not exceed transactionLimit (%d), got %d", txn, floor)
	}
}

func (c *checker) authHost(h AuthHost, certs map[string]CertUsage) {
	const path = "authHost."
	if c.list(path+"addresses", len(h.Addresses), maxAddresses) {
		seen := map[string]bool{}
		for i, a := range h.Addresses {
			p := at(path+"addresses", i)
			if msg := checkHostPort(a); msg != "" {
				c.add(p, "%s", msg)
			} else if seen[strings.ToLower(a)] {
				c.add(p, "duplicate %q", a)
			}
			seen[strings.ToLower(a)] = true
		}
	}
	if h.Configured() {
		for _, f := range []struct{ name, value string }{
			{"tpdu", h.TPDU}, {"nii", h.NII}, {"terminalId", h.TerminalID}, {"merchantId", h.MerchantID},
		} {
			if f.value == "" {
				c.add(path+f.name, "required when addresses are set")
			}
		}
		if h.TLS && h.CACertificate == "" {
			c.add(path+"caCertificate", "required when tls is on")
		}
	}
	if h.ServerName != "" && !validHostname(h.ServerName) {
		c.add(path+"serverName", "must be a DNS name, got %q", h.ServerName)
	}
	c.certRef(path+"caCertificate", h.CACertificate, CertCA, certs)
	c.certRef(path+"clientCertificate", h.ClientCertificate, CertClient, certs)
	c.rangeU(path+"connectTimeoutSec", uint64(h.ConnectTimeoutSec), 1, 120)
	c.rangeU(path+"connectRetries", uint64(h.ConnectRetries), 0, 9)

	tpduOK := h.TPDU == "" || (isHex(h.TPDU) && len(h.TPDU) == 10 && h.TPDU[:2] == "60")
	if !tpduOK {
		c.add(path+"tpdu", "must be 10 hex digits starting with 60, got %q", h.TPDU)
	}
	niiOK := h.NII == "" || (isDigits(h.NII) && len(h.NII) == 3)
	if !niiOK {
		c.add(path+"nii", "must be 3 digits, got %q", h.NII)
	}
	// The TPDU destination address is the NII; two fields saying different things is a
	// configuration mistake that would route every message wrongly.
	if tpduOK && niiOK && h.TPDU != "" && h.NII != "" && h.TPDU[2:6] != "0"+h.NII {
		c.add(path+"tpdu", "destination %s does not match nii %s (want 0%s)", h.TPDU[2:6], h.NII, h.NII)
	}
	if h.TerminalID != "" && (len(h.TerminalID) != 8 || !printableASCII(h.TerminalID)) {
		c.add(path+"terminalId", "must be 8 printable ASCII characters (ans8)")
	}
	if h.MerchantID != "" && (len(h.MerchantID) != 15 || !printableASCII(h.MerchantID)) {
		c.add(path+"merchantId", "must be 15 printable ASCII characters (ans15)")
	}
	c.text(path+"merchantName", h.MerchantName, 40)
}

func (c *checker) currencies(cs []Currency) {
	const path = "currencies"
	if len(cs) == 0 {
		c.add(path, "at least one currency is required")
		return
	}
	if !c.list(path, len(cs), maxCurrencies) {
		return
	}
	defaults := 0
	seenNum, seenAlpha := map[string]bool{}, map[string]bool{}
	for i, cur := range cs {
		p := at(path, i)
		if !isDigits(cur.Numeric) || len(cur.Numeric) != 3 {
			c.add(p+".numeric", "must be 3 digits (ISO 4217), got %q", cur.Numeric)
		} else if seenNum[cur.Numeric] {
			c.add(p+".numeric", "duplicate %s", cur.Numeric)
		}
		seenNum[cur.Numeric] = true
		if !currAlphaRe.MatchString(cur.Alpha) {
			c.add(p+".alpha", "must be 3 upper-case letters (ISO 4217), got %q", cur.Alpha)
		} else if seenAlpha[cur.Alpha] {
			c.add(p+".alpha", "duplicate %s", cur.Alpha)
		}
		seenAlpha[cur.Alpha] = true
		c.rangeU(p+".exponent", uint64(cur.Exponent), 0, 4)
		if cur.Default {
			defaults++
		}
	}
	if defaults != 1 {
		c.add(path, "exactly one currency must be default, found %d", defaults)
	}
}

func (c *checker) binRanges(rs []BINRange) {
	const path = "binRanges"
	if !c.list(path, len(rs), maxBINRanges) {
		return
	}
	type span struct {
		lo, hi string // padded to 19 digits so ranges of different lengths compare
		i      int
	}
	var spans []span
	for i, r := range rs {
		p := at(path, i)
		ok := true
		for _, f := range []struct{ name, v string }{{"low", r.Low}, {"high", r.High}} {
			if !isDigits(f.v) || len(f.v) > 19 {
				c.add(p+"."+f.name, "must be 1..19 digits, got %q", f.v)
				ok = false
			}
		}
		switch {
		case !ok:
		case len(r.Low) != len(r.High):
			c.add(p, "low and high must have the same length")
			ok = false
		case r.Low > r.High:
			c.add(p, "low %s is above high %s", r.Low, r.High)
			ok = false
		}
		if !validScheme(r.Scheme) {
			c.add(p+".scheme", "unknown scheme %q", r.Scheme)
		}
		if r.Region != RegionDomestic && r.Region != RegionForeign {
			c.add(p+".region", "must be domestic or foreign, got %q", r.Region)
		}
		if ok {
			spans = append(spans, span{
				lo: r.Low + strings.Repeat("0", 19-len(r.Low)),
				hi: r.High + strings.Repeat("9", 19-len(r.High)),
				i:  i,
			})
		}
	}
	// Overlaps would make a card's region depend on list order: sort by start and compare each
	// range with the furthest-reaching one before it.
	slices.SortFunc(spans, func(a, b span) int { return strings.Compare(a.lo, b.lo) })
	for k := 1; k < len(spans); k++ {
		prev := spans[k-1]
		if spans[k].lo <= prev.hi {
			a, b := min(prev.i, spans[k].i), max(prev.i, spans[k].i)
			c.add(at(path, b), "overlaps %s", at(path, a))
		}
		if prev.hi > spans[k].hi {
			spans[k].hi, spans[k].i = prev.hi, prev.i
		}
	}
}

func (c *checker) qrHosts(hs []QRHost, certs map[string]CertUsage) {
	const path = "qrHosts"
	if !c.list(path, len(hs), maxQRHosts) {
		return
	}
	seen := map[string]bool{}
	for i, h := range hs {
		p := at(path, i)
		if !nameRe.MatchString(h.Name) {
			c.add(p+".name", "must match %s, got %q", nameRe, h.Name)
		} else if seen[h.Name] {
			c.add(p+".name", "duplicate %q", h.Name)
		}
		seen[h.Name] = true
		if u, err := url.Parse(h.URL); err != nil || !(u.Scheme == "https" || u.Scheme == "http" && loopback(u.Hostname())) || u.Host == "" || u.User != nil || len(h.URL) > 256 {
			c.add(p+".url", "must be an https URL (http only on loopback) without credentials, at most 256 bytes")
		}
		if h.MerchantID == "" || len(h.MerchantID) > 64 || !printableASCII(h.MerchantID) {
			c.add(p+".merchantId", "must be 1..64 printable ASCII characters")
		}
		c.certRef(p+".caCertificate", h.CACertificate, CertCA, certs)
		c.rangeU(p+".qrLifetimeSec", uint64(h.QRLifetimeSec), 30, 600)
		c.rangeU(p+".pollIntervalSec", uint64(h.PollIntervalSec), 1, 30)
	}
}

func (c *checker) dynamicLimits(ls []DynamicLimit) {
	const path = "dynamicLimits"
	if !c.list(path, len(ls), maxDynamicLimits) {
		return
	}
	seen := map[string]bool{}
	for i, l := range ls {
		p := at(path, i)
		if !isHex(l.ProgramID) || len(l.ProgramID)%2 != 0 || len(l.ProgramID) < 2 || len(l.ProgramID) > 32 {
			c.add(p+".programId", "must be 1..16 bytes as hex, got %q", l.ProgramID)
		} else if key := strings.ToUpper(l.ProgramID); seen[key] {
			c.add(p+".programId", "duplicate %s", l.ProgramID)
		} else {
			seen[key] = true
		}
		c.limits(p+".", l.TransactionLimit, l.CVMRequiredLimit, l.FloorLimit)
	}
}

func (c *checker) specialRules(rs []EMVSpecialRule) {
	const path = "emvSpecialProcessing"
	if !c.list(path, len(rs), maxSpecialRules) {
		return
	}
	seen := map[string]bool{}
	for i, r := range rs {
		p := at(path, i) + ".aid"
		if c.aid(p, r.AID) {
			if key := strings.ToUpper(r.AID); seen[key] {
				c.add(p, "duplicate %s", r.AID)
			} else {
				seen[key] = true
			}
		}
	}
}

func (c *checker) print(p PrintProfile) {
	const path = "printProfile."
	switch p.Language {
	case LanguageRussian, LanguageKazakh, LanguageChinese, LanguageEnglish:
	default:
		c.add(path+"language", "must be ru, kk, zh or en, got %q", p.Language)
	}
	c.text(path+"storeName", p.StoreName, maxPrintLineRunes)
	c.text(path+"city", p.City, maxPrintLineRunes)
	c.text(path+"address", p.Address, maxPrintLineRunes)
	if p.TaxID != "" && !taxIDRe.MatchString(p.TaxID) {
		c.add(path+"taxId", "must be 1..20 letters or digits, got %q", p.TaxID)
	}
	for _, l := range []struct {
		name  string
		lines []string
	}{{"headerLines", p.HeaderLines}, {"footerLines", p.FooterLines}} {
		if c.list(path+l.name, len(l.lines), maxPrintLines) {
			for i, s := range l.lines {
				c.text(at(path+l.name, i), s, maxPrintLineRunes)
			}
		}
	}
	if p.MerchantCopy != CopyPrint && p.MerchantCopy != CopyElectronic && p.MerchantCopy != CopyBoth {
		c.add(path+"merchantCopy", "must be print, electronic or both, got %q", p.MerchantCopy)
	}
	if p.CustomerCopy != CopyPrint && p.CustomerCopy != CopyAsk && p.CustomerCopy != CopyNone {
		c.add(path+"customerCopy", "must be print, ask or none, got %q", p.CustomerCopy)
	}
}

func (c *checker) allowedOperations(d *Document) {
	const path = "allowedOperations"
	c.operations(path, d.AllowedOperations)
	if d.AuthHost.Configured() {
		return
	}
	for i, op := range d.AllowedOperations {
		// A QR-only terminal pays and refunds through its QR hosts, not the card host.
		if d.ECR.QROnly && (op == OpPayment || op == OpRefund) {
			continue
		}
		if validOperation(op) && op.NeedsHost() {
			c.add(at(path, i), "%s needs an authorisation host (authHost.addresses)", op)
		}
	}
}

func (c *checker) operations(path string, ops []Operation) {
	// Without duplicates there cannot be more entries than names.
	if !c.list(path, len(ops), len(operations)) {
		return
	}
	seen := map[Operation]bool{}
	for i, op := range ops {
		switch {
		case !validOperation(op):
			c.add(at(path, i), "unknown operation %q", op)
		case seen[op]:
			c.add(at(path, i), "duplicate %q", op)
		}
		seen[op] = true
	}
}

func (c *checker) certificates(cs []CertificateRef) map[string]CertUsage {
	const path = "certificates"
	usage := map[string]CertUsage{}
	if !c.list(path, len(cs), maxCertificates) {
		return usage
	}
	for i, cert := range cs {
		p := at(path, i)
		if !nameRe.MatchString(cert.Name) {
			c.add(p+".name", "must match %s, got %q", nameRe, cert.Name)
		} else if _, dup := usage[cert.Name]; dup {
			c.add(p+".name", "duplicate %q", cert.Name)
		} else {
			usage[cert.Name] = cert.Usage
		}
		if !isHex(cert.SHA256) || len(cert.SHA256) != 64 {
			c.add(p+".sha256", "must be 64 hex digits (SHA-256 of the DER certificate)")
		}
		if cert.Usage != CertCA && cert.Usage != CertClient && cert.Usage != CertServer {
			c.add(p+".usage", "must be ca, client or server, got %q", cert.Usage)
		}
	}
	return usage
}

// certRef checks an optional reference to a certificate of the given usage.
func (c *checker) certRef(path, name string, want CertUsage, certs map[string]CertUsage) {
	if name == "" {
		return
	}
	got, ok := certs[name]
	switch {
	case !ok:
		c.add(path, "no certificate named %q in certificates", name)
	case got != want:
		c.add(path, "certificate %q has usage %q, want %q", name, got, want)
	}
}

func (c *checker) applications(as []EMVApplication) {
	const path = "emvApplications"
	if !c.list(path, len(as), maxApplications) {
		return
	}
	seen := map[string]bool{}
	for i, a := range as {
		p := at(path, i)
		if c.aid(p+".aid", a.AID) {
			if key := strings.ToUpper(a.AID); seen[key] {
				c.add(p+".aid", "duplicate %s", a.AID)
			} else {
				seen[key] = true
			}
		}
		if a.Label == "" || len(a.Label) > 16 || !printableASCII(a.Label) {
			c.add(p+".label", "must be 1..16 printable ASCII characters")
		}
		c.rangeU(p+".priority", uint64(a.Priority), 0, 15)
		c.hexLen(p+".appVersion", a.AppVersion, 4)
		if !a.Contact && !a.Contactless {
			c.add(p, "must enable contact, contactless or both")
		}
		if a.Contactless {
			c.rangeU(p+".kernel", uint64(a.Kernel), 1, 8)
		}
		if a.Threshold > a.FloorLimit || (a.FloorLimit > 0 && a.Threshold == a.FloorLimit) {
			c.add(p+".threshold", "must be below floorLimit (%d), got %d", a.FloorLimit, a.Threshold)
		}
		if a.MaxTargetPercent > 99 {
			c.add(p+".maxTargetPercent", "must be 0..99, got %d", a.MaxTargetPercent)
		}
		if a.TargetPercent > a.MaxTargetPercent {
			c.add(p+".targetPercent", "must not exceed maxTargetPercent (%d), got %d", a.MaxTargetPercent, a.TargetPercent)
		}
		for _, f := range []struct{ name, v string }{{"tacDenial", a.TACDenial}, {"tacOnline", a.TACOnline}, {"tacDefault", a.TACDefault}} {
			if f.v != "" {
				c.hexLen(p+"."+f.name, f.v, 10)
			}
		}
		for _, f := range []struct{ name, v string }{{"defaultDdol", a.DefaultDDOL}, {"defaultTdol", a.DefaultTDOL}} {
			if f.v != "" && (!isHex(f.v) || len(f.v)%2 != 0 || len(f.v) > 252) {
				c.add(p+"."+f.name, "must be hex, whole bytes, at most 126 bytes")
			}
		}
	}
}

// aid checks an AID (5..16 bytes as hex) and reports whether it is well-formed.
func (c *checker) aid(path, aid string) bool {
	if !isHex(aid) || len(aid)%2 != 0 || len(aid) < 10 || len(aid) > 32 {
		c.add(path, "must be 10..32 hex digits, whole bytes, got %q", aid)
		return false
	}
	return true
}

func (c *checker) actionCodes(t ActionCodes) {
	c.hexLen("terminalActionCodes.denial", t.Denial, 10)
	c.hexLen("terminalActionCodes.online", t.Online, 10)
	c.hexLen("terminalActionCodes.default", t.Default, 10)
}

func (c *checker) paymentParameters(p PaymentParameters) {
	const path = "paymentParameters."
	c.rangeU(path+"presentTimeoutSec", uint64(p.PresentTimeoutSec), 10, 600)
	c.rangeU(path+"confirmTimeoutSec", uint64(p.ConfirmTimeoutSec), 10, 600)
	c.rangeU(path+"pinEntryTimeoutSec", uint64(p.PINEntryTimeoutSec), 10, 300)
	c.rangeU(path+"refundWindowDays", uint64(p.RefundWindowDays), 1, 3650)
	c.rangeU(path+"chipAttempts", uint64(p.ChipAttempts), 1, 5)
}

func (c *checker) paymentProfile(p PaymentProfile) {
	const path = "paymentProfile."
	if p.MaxAmount != 0 && p.MinAmount > p.MaxAmount {
		c.add(path+"minAmount", "must not exceed maxAmount (%d), got %d", p.MaxAmount, p.MinAmount)
	}
	if !c.list(path+"fees", len(p.Fees), maxFees) {
		return
	}
	type key struct {
		op Operation
		m  Method
	}
	seen := map[key]bool{}
	for i, f := range p.Fees {
		fp := at(path+"fees", i)
		if !validOperation(f.Operation) {
			c.add(fp+".operation", "unknown operation %q", f.Operation)
		}
		if f.Method != MethodCard && f.Method != MethodQR {
			c.add(fp+".method", "must be card or qr, got %q", f.Method)
		}
		if k := (key{f.Operation, f.Method}); seen[k] {
			c.add(fp, "duplicate fee for %s by %s", f.Operation, f.Method)
		} else {
			seen[k] = true
		}
		c.rangeU(fp+".percentBp", uint64(f.PercentBP), 0, 10000)
		if f.Max != 0 && f.Min > f.Max {
			c.add(fp+".min", "must not exceed max (%d), got %d", f.Max, f.Min)
		}
	}
}

func (c *checker) capabilities(t TerminalCapabilities) {
	const path = "terminalCapabilities."
	c.hexLen(path+"capabilities", t.Capabilities, 6)
	c.hexLen(path+"additionalCapabilities", t.AdditionalCapabilities, 10)
	// EMV Book 4 Annex A1: operational control 1..3 (financial institution, merchant,
	// cardholder) and environment 1..6 (attended/unattended, online/offline).
	tt := t.TerminalType
	if len(tt) != 2 || tt[0] < '1' || tt[0] > '3' || tt[1] < '1' || tt[1] > '6' {
		c.add(path+"terminalType", "must be an EMV terminal type 11..36 (9F35), got %q", tt)
	}
}

func (c *checker) hostParameters(h HostParameters) {
	const path = "hostParameters."
	c.rangeU(path+"responseTimeoutSec", uint64(h.ResponseTimeoutSec), 5, 180)
	c.rangeU(path+"resendCount", uint64(h.ResendCount), 0, 9)
	if h.TipsEnabled {
		c.rangeU(path+"tipMaxPercent", uint64(h.TipMaxPercent), 1, 100)
	} else if h.TipMaxPercent > 100 {
		c.add(path+"tipMaxPercent", "must be 0..100, got %d", h.TipMaxPercent)
	}
	if h.AutoSettleAt != "" {
		if _, ok := parseHHMM(h.AutoSettleAt); !ok {
			c.add(path+"autoSettleAt", "must be HH:MM, got %q", h.AutoSettleAt)
		}
	}
	if h.OfflineUploadMode != OfflineUploadNextOnline && h.OfflineUploadMode != OfflineUploadSettlement {
		c.add(path+"offlineUploadMode", "must be nextOnline or settlement, got %q", h.OfflineUploadMode)
	}
	c.rangeU(path+"masterKeyIndex", uint64(h.MasterKeyIndex), 0, MasterKeySlots-1)
	c.rangeU(path+"maxBatchSize", uint64(h.MaxBatchSize), MinBatchSize, 10000)
	if h.MaxLogCount < h.MaxBatchSize || h.MaxLogCount > 100000 {
		c.add(path+"maxLogCount", "must be maxBatchSize (%d)..100000, got %d", h.MaxBatchSize, h.MaxLogCount)
	}
	c.rangeU(path+"pinLengthMin", uint64(h.PINLengthMin), 4, 12)
	if h.PINLengthMax < h.PINLengthMin || h.PINLengthMax > 12 {
		c.add(path+"pinLengthMax", "must be pinLengthMin (%d)..12, got %d", h.PINLengthMin, h.PINLengthMax)
	}
}

func (c *checker) ecr(d *Document, certs map[string]CertUsage) {
	const path = "ecr."
	e := d.ECR
	if e.Port == 0 {
		c.add(path+"port", "must be 1..65535")
	}
	if e.QROnly && len(d.QRHosts) == 0 {
		c.add(path+"qrOnly", "needs at least one qrHosts entry")
	}
	if e.ServerCertificate != "" && !e.ProtectedMode {
		c.add(path+"serverCertificate", "only used in protectedMode")
	}
	c.certRef(path+"serverCertificate", e.ServerCertificate, CertServer, certs)
	if e.CollectTimeoutSec != 0 {
		c.rangeU(path+"collectTimeoutSec", uint64(e.CollectTimeoutSec), 10, 3600)
	}
	if c.list(path+"allowedNetworks", len(e.AllowedNetworks), maxNetworks) {
		for i, n := range e.AllowedNetworks {
			if pfx, err := netip.ParsePrefix(n); err != nil || pfx != pfx.Masked() {
				c.add(at(path+"allowedNetworks", i), "must be a network in CIDR form (host bits zero), got %q", n)
			}
		}
	}
}

// rangeU reports v outside [lo, hi].
func (c *checker) rangeU(path string, v, lo, hi uint64) {
	if v < lo || v > hi {
		c.add(path, "must be %d..%d, got %d", lo, hi, v)
	}
}

// hexLen requires exactly n hex digits.
func (c *checker) hexLen(path, s string, n int) {
	if len(s) != n || !isHex(s) {
		c.add(path, "must be %d hex digits, got %q", n, s)
	}
}

// text checks free text shown on screens and receipts: valid UTF-8, no control characters, at
// most max characters.
func (c *checker) text(path, s string, max int) {
	switch {
	case !utf8.ValidString(s):
		c.add(path, "must be valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		c.add(path, "must not contain control characters")
	case utf8.RuneCountInString(s) > max:
		c.add(path, "at most %d characters, got %d", max, utf8.RuneCountInString(s))
	}
}

func validOperation(op Operation) bool { return slices.Contains(operations, op) }

func validScheme(s Scheme) bool {
	switch s {
	case SchemeVisa, SchemeMastercard, SchemeUnionPay, SchemeMir, SchemeAmex, SchemeJCB,
		SchemeDiscover, SchemeLocal:
		return true
	}
	return false
}

// checkHostPort returns why a is not host:port, or "".
func checkHostPort(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Sprintf("must be host:port, got %q", a)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("port must be 1..65535, got %q", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !validHostname(host) {
		return fmt.Sprintf("host must be an IP address or DNS name, got %q", host)
	}
	return ""
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}

// parseHHMM parses "HH:MM" into minutes after midnight.
func parseHHMM(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' || !isDigits(s[:2]) || !isDigits(s[3:]) {
		return 0, false
	}
	h, m := int(s[0]-'0')*10+int(s[1]-'0'), int(s[3]-'0')*10+int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F') {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// loopback: a provider on the terminal itself (or the demo's simulator) may speak plain HTTP;
// nothing crosses a network.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
