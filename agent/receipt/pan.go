package receipt

// MaskPAN returns a card number as it may be shown: the first six and last four digits with
// asterisks between them. Whatever is passed — a full PAN by mistake, a PAN already masked,
// spaces, track data after a separator — only the digits and asterisks before the first
// other character count, and the middle is masked again. Numbers shorter than 13 keep at
// most their last four digits, and fewer when they are very short, so that no input is
// shown whole. An empty input stays empty.
func MaskPAN(pan string) string {
	var buf [32]byte
	d := buf[:0]
	for i := 0; i < len(pan); i++ {
		c := pan[i]
		switch {
		case c >= '0' && c <= '9' || c == '*':
			if len(d) < 19 {
				d = append(d, c)
			} else {
				// Longer than any PAN: keep the tail, the last four count.
				copy(d, d[1:])
				d[len(d)-1] = c
			}
		case c == ' ' || c == '-':
		default:
			i = len(pan) // a field separator ('=', 'D', '^'): the rest is not the PAN
		}
	}
	n := len(d)
	if n == 0 {
		return ""
	}
	keepHead, keepTail := 6, 4
	if n < 13 {
		keepHead = 0
		keepTail = min(4, n/3)
	}
	out := make([]byte, n)
	for i := range n {
		if i < keepHead || i >= n-keepTail {
			out[i] = d[i]
		} else {
			out[i] = '*'
		}
	}
	return string(out)
}

// Masked reports whether s is a card number as MaskPAN leaves it: at most the first six and
// last four of 13 to 19 characters are digits, the rest asterisks; shorter strings are
// asterisks but for at most their last four (and at most a third) characters. The empty
// string counts as masked.
func Masked(s string) bool {
	n := len(s)
	if n > 19 {
		return false
	}
	head, tail := 6, 4
	if n < 13 {
		head, tail = 0, min(4, n/3)
	}
	for i := range n {
		c := s[i]
		if c == '*' {
			continue
		}
		if c < '0' || c > '9' || (i >= head && i < n-tail) {
			return false
		}
	}
	return true
}

// shortPAN is a masked PAN at most 16 characters: 6 digits, six asterisks, 4 digits for
// PANs longer than 16.
func shortPAN(masked string) string {
	if len(masked) <= 16 {
		return masked
	}
	return masked[:6] + "******" + masked[len(masked)-4:]
}

// digitRuns calls f for every run of 13 to 19 ASCII digits in s — what a card number looks
// like — and stops when f returns false.
func digitRuns(s string, f func(run string) bool) {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if n := i - start; n >= 13 && n <= 19 {
				if !f(s[start:i]) {
					return
				}
			}
			start = -1
		}
	}
}
