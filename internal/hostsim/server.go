package hostsim

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/iso8583"
)

// Server is the acquirer host.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	rnd   io.Reader
	terms map[string]*Terminal // configuration by TID
	keks  map[string][]byte
	accts map[string]*Account

	mu  sync.Mutex // guards st, idx, rev, seen, qrTimers
	st  *state
	idx map[tkey]*Entry
	rev map[tkey]*Reversal
	// seen counts the requests received per MTI (malformed frames under "malformed").
	seen     map[string]int
	qrTimers map[string]*time.Timer

	faults faultSet

	lnMu   sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	done   chan struct{}
	closed bool
}

// New makes a server from the configuration (validated; defaults filled in) and reads
// the snapshot file when the configuration names one.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, rnd: cfg.Rand,
		terms: map[string]*Terminal{}, keks: map[string][]byte{}, accts: map[string]*Account{},
		seen: map[string]int{}, qrTimers: map[string]*time.Timer{},
		conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rnd == nil {
		s.rnd = rand.Reader
	}
	s.st = &state{Terminals: map[string]*termState{}, Accounts: map[string]*acctState{}, QR: map[string]*QROrder{}}
	for i := range s.cfg.Terminals {
		t := &s.cfg.Terminals[i]
		s.terms[t.TID] = t
		s.keks[t.TID], _ = hex.DecodeString(t.KEK)
		s.st.Terminals[t.TID] = &termState{Batch: s.cfg.Rules.BatchStart}
	}
	for i := range s.cfg.Accounts {
		a := &s.cfg.Accounts[i]
		s.accts[a.PAN] = a
		s.st.Accounts[a.PAN] = &acctState{Balance: a.Balance}
	}
	if err := s.loadSnapshot(); err != nil {
		return nil, fmt.Errorf("hostsim: snapshot %s: %w", s.cfg.Snapshot, err)
	}
	s.index()
	s.resumeQR()
	return s, nil
}

// Start listens on the configured address (TLS when a certificate is configured) and
// serves in the background until Close.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("hostsim: TLS: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if err := s.adopt(ln); err != nil {
		return err
	}
	go func() { _ = s.acceptLoop(ln) }()
	return nil
}

// adopt makes ln the server's listener.
func (s *Server) adopt(ln net.Listener) error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.wg.Add(1)
	return nil
}

// Serve accepts connections on ln until Close (or ln fails). Each connection is served
// on its own goroutine: frames in, answers out, in order.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.adopt(ln); err != nil {
		return err
	}
	return s.acceptLoop(ln)
}

func (s *Server) acceptLoop(ln net.Listener) error {
	defer s.wg.Done()
	s.log.Info("hostsim listening", "addr", ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.lnMu.Lock()
		if s.closed {
			s.lnMu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.lnMu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.lnMu.Lock()
			delete(s.conns, c)
			s.lnMu.Unlock()
		}()
	}
}

// Addr is the listening address ("" before Start/Serve).
func (s *Server) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops listening, closes every connection, stops the QR customer timers and waits
// for the connection goroutines.
func (s *Server) Close() error {
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.lnMu.Unlock()
	s.mu.Lock()
	for id, t := range s.qrTimers {
		t.Stop()
		delete(s.qrTimers, id)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Seen is how many requests the server received per MTI ("malformed" for frames it
// could not read).
func (s *Server) Seen() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.seen))
	for k, v := range s.seen {
		out[k] = v
	}
	return out
}

func (s *Server) count(what string) {
	s.mu.Lock()
	s.seen[what]++
	s.mu.Unlock()
}

// serveConn reads frames and answers them until the peer goes, a frame is malformed, the
// connection is idle too long or a fault closes it.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().String()
	log := s.log.With("peer", peer)
	log.Debug("connection open")
	idle := time.Duration(s.cfg.IdleTimeout)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		frame, err := iso8583.ReadFrame(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Info("connection closed", "err", err)
				if errors.Is(err, iso8583.ErrTooLong) || errors.Is(err, iso8583.ErrMalformed) {
					s.count("malformed")
				}
			}
			return
		}
		h, m, mab, err := safeUnpack(frame)
		if err != nil {
			s.count("malformed")
			log.Warn("malformed frame: connection closed", "err", err, "len", len(frame))
			return
		}
		s.count(m.MTI)
		f, hit := s.faults.take(m.MTI)
		if hit {
			log.Info("fault", "kind", f.Kind, "mti", m.MTI, "stan", m.STAN)
		}
		if hit && f.Kind == FaultDrop {
			continue
		}
		if hit && f.Kind == FaultDelay {
			t := time.NewTimer(time.Duration(f.Delay))
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return
			}
		}
		out, err := s.answer(h, m, mab, hit && f.Kind == FaultBadMAC)
		if err != nil {
			log.Warn("request refused: connection closed", "mti", m.MTI, "err", err)
			return
		}
		if hit {
			switch f.Kind {
			case FaultNoAnswer:
				continue
			case FaultHalfFrame:
				_, _ = c.Write(out[:max(1, len(out)/2)])
				return
			case FaultGarbage:
				_, _ = c.Write(garbage(s.rnd))
				continue
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(out); err != nil {
			log.Info("write failed", "err", err)
			return
		}
	}
}

// garbage is a length-prefixed frame whose content is not a message: the stream stays in
// step, the client's Unpack fails.
func garbage(r io.Reader) []byte {
	b := make([]byte, 2+24)
	b[1] = 24
	_, _ = io.ReadFull(r, b[2:])
	b[2] = 0xEE  // not the 0x60 of a TPDU
	b[13] = 0xFF // nor a BCD MTI: the codec always refuses it
	return b
}

// safeUnpack is Unpack that turns a codec panic into an error: bad input from a terminal
// must never stop the host.
func safeUnpack(frame []byte) (h iso8583.Header, m *iso8583.Msg, mab []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: codec panic: %v", iso8583.ErrMalformed, r)
		}
	}()
	h, m, mab, err = iso8583.Unpack(frame)
	if err == nil && m == nil {
		err = iso8583.ErrMalformed
	}
	return
}

// HandleFrame is the request handler without the network and without faults: one frame
// (with its 2-byte length) in, the answer frame out. An error means the connection would
// be closed (malformed frame, unknown MTI). It never panics.
func (s *Server) HandleFrame(frame []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("hostsim: handler panic: %v", r)
			s.log.Error("handler panic", "panic", r)
		}
	}()
	if len(frame) < 2 || int(frame[0])<<8|int(frame[1]) != len(frame)-2 {
		return nil, iso8583.ErrMalformed
	}
	h, m, mab, err := safeUnpack(frame)
	if err != nil {
		return nil, err
	}
	return s.answer(h, m, mab, false)
}

// answer processes a request and packs its answer.
func (s *Server) answer(h iso8583.Header, m *iso8583.Msg, mab []byte, badMAC bool) ([]byte, error) {
	a, err := s.process(h, m, mab)
	if err != nil {
		return nil, err
	}
	var fn iso8583.MACFunc
	switch {
	case badMAC:
		fn = badMACFunc(a.mak)
	case a.mak != nil:
		fn = macFunc(a.mak)
	}
	out, err := iso8583.Pack(a.h, a.m, fn)
	if err != nil {
		s.log.Error("packing the answer", "mti", a.m.MTI, "err", err)
		return nil, err
	}
	return out, nil
}
