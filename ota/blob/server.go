package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Error texts of the server's answers.
const (
	ErrTextUnknown = "unknown transfer"
	ErrTextPastEnd = "request past the end"
)

// ErrBadTopic is returned by Server.Handle for a topic that is not an up/blob topic.
var ErrBadTopic = errors.New("blob: not a blob request topic")

// Server answers blob requests (the TMS side). Open finds a transfer's bytes and size;
// Publish sends an answer (QoS 1). Handle may be called concurrently.
type Server struct {
	Publish func(ctx context.Context, topic string, payload []byte) error
	Open    func(tid string) (io.ReaderAt, int64, bool)
	Logger  *slog.Logger // optional
}

// Handle answers one request received on topic: the requested range in messages of at most
// BlockSize, read from the file as they go, or an error answer for an unknown transfer or a
// range past the end. A request that does not decode is not answered.
func (s *Server) Handle(ctx context.Context, topic string, payload []byte) error {
	device, tid, up, ok := tmsproto.ParseBlobTopic(topic)
	if !ok || !up {
		return fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	req, err := DecodeRequest(tid, payload)
	if err != nil {
		return fmt.Errorf("blob: from %s: %w", device, err)
	}
	down := tmsproto.BlobDownTopic(device, tid)
	ra, size, ok := s.Open(tid)
	if !ok {
		s.logger().Info("blob request for an unknown transfer", "device", device, "transfer", tid)
		return s.answer(ctx, down, Block{Error: ErrTextUnknown})
	}
	if size <= 0 || req.Offset >= uint64(size) {
		return s.answer(ctx, down, Block{Error: ErrTextPastEnd, Size: uint64(max(size, 0))})
	}
	end := min(req.Offset+req.Length, uint64(size))
	s.logger().Debug("blob request", "device", device, "transfer", tid, "offset", req.Offset, "length", end-req.Offset)
	buf := make([]byte, min(BlockSize, end-req.Offset))
	for off := req.Offset; off < end; {
		n := int(min(BlockSize, end-off))
		got, err := ra.ReadAt(buf[:n], int64(off))
		if got < n {
			// Not answered: the client asks again after its stall timeout, which outlasts
			// a passing read error.
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("blob: read %s at %d: %w", tid, off, err)
		}
		if err := s.answer(ctx, down, Block{Offset: off, Data: buf[:n], Size: uint64(size)}); err != nil {
			return err
		}
		off += uint64(n)
	}
	return nil
}

func (s *Server) answer(ctx context.Context, topic string, b Block) error {
	payload, err := EncodeBlock(b)
	if err != nil {
		return err
	}
	if err := s.Publish(ctx, topic, payload); err != nil {
		return fmt.Errorf("blob: answer on %s: %w", topic, err)
	}
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}
