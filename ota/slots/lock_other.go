//go:build !unix

package slots

// lock excludes goroutines only: the launcher needs a Unix kernel anyway.
func (s *Slots) lock() (unlock func(), err error) {
	s.mu.Lock()
	return s.mu.Unlock, nil
}
