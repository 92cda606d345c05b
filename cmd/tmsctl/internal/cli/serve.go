package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/blob"
)

// serveWorkers is how many requests are answered at once; a transfer always maps to the same
// worker, so its answers leave in the order of its requests.
const serveWorkers = 4

// servePublishTimeout bounds the wait for the PUBACK of one answer.
const servePublishTimeout = 10 * time.Second

func runServe(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "serve", "--dir DIR [flags]", `
Serves the files of DIR to terminals over MQTT (ota/blob): terminals ask on
tms/v1/{device}/up/blob/{transfer} and get the blocks on .../down/blob/{transfer}.
Every regular file of DIR (not its subdirectories) is hashed once at start and served by
its transfer id, the first 16 bytes of its SHA-256 in hex (what an ota.install command
names by default), and by its file name when that is a valid transfer id. The table of
files is printed on stdout; each request is logged on stderr. Runs until interrupted.`)
	var cf connFlags
	cf.register(fs)
	dir := fs.String("dir", "", "`directory` whose files are served (required)")
	device := fs.String("device", "+", "serve only this terminal `id`, or + for all")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *dir == "" {
		return usageErr(fs, "--dir is required")
	}
	if *device != "+" {
		if err := tmsproto.ValidDeviceID(*device); err != nil {
			return usageErr(fs, "--device: %v", err)
		}
	}
	files, err := openServeDir(*dir)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	defer files.close()
	for _, f := range files.list {
		fmt.Fprintf(env.Stdout, "%s %12d %s\n", f.id, f.size, f.name)
	}

	level := slog.LevelInfo
	if cf.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	s := &blobServer{log: log, reqs: make([]chan mqtt.Message, serveWorkers)}
	s.blob = &blob.Server{Open: files.open, Publish: s.publish, Logger: log}
	for i := range s.reqs {
		s.reqs[i] = make(chan mqtt.Message, 64)
	}
	filter := tmsproto.BlobUpTopic(*device, "+")
	subscribed := make(chan error, 1)
	pc, err := cf.connectPaho(ctx, fs, env, func(c mqtt.Client) {
		// Also after every reconnect: the session is clean.
		tok := c.Subscribe(filter, 1, s.onRequest)
		err := errors.New("subscription timed out")
		if tok.WaitTimeout(cf.connectTimeout) {
			err = tok.Error()
		}
		if err != nil {
			log.Error("subscribe failed", "filter", filter, "err", err)
		}
		select {
		case subscribed <- err:
		default:
		}
	})
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	s.pc = pc
	defer pc.Disconnect(250)
	select {
	case err := <-subscribed:
		if err != nil {
			return failf(env, ExitUsage, "subscribe %s: %v", filter, err)
		}
	case <-ctx.Done():
		return ExitOK
	}

	var wg sync.WaitGroup
	for _, ch := range s.reqs {
		wg.Go(func() { s.work(ctx, ch) })
	}
	fmt.Fprintf(env.Stderr, "serving %d files from %s on %s\n", len(files.list), *dir, filter)
	<-ctx.Done()
	wg.Wait()
	return ExitOK
}

// connectPaho connects a plain MQTT client with the connection flags and their environment
// fallbacks, calling onConnect after every connection. serve needs raw publishing on down/
// topics, which tmsclient does not offer.
func (cf *connFlags) connectPaho(ctx context.Context, fs *flag.FlagSet, env Env, onConnect func(mqtt.Client)) (mqtt.Client, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["broker"] {
		if b := env.Getenv("TMS_BROKER"); b != "" {
			cf.broker = b
		}
	}
	if !set["password"] {
		cf.password = env.Getenv("TMS_PASSWORD")
	}
	tlsConf, err := cf.tls.Config()
	if err != nil {
		return nil, err
	}
	id := cf.clientID
	if id == "" {
		id = fmt.Sprintf("tmsctl-serve-%d", time.Now().UnixNano())
	}
	o := mqtt.NewClientOptions().AddBroker(cf.broker).SetClientID(id).
		SetUsername(cf.username).SetPassword(cf.password).
		SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(cf.connectTimeout).
		SetOnConnectHandler(onConnect)
	if tlsConf != nil {
		o.SetTLSConfig(tlsConf)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", cf.broker, err)
	}
	return c, nil
}

type blobServer struct {
	log  *slog.Logger
	pc   mqtt.Client
	blob *blob.Server
	reqs []chan mqtt.Message
}

// onRequest runs on paho's receive path: it only queues.
func (s *blobServer) onRequest(_ mqtt.Client, m mqtt.Message) {
	h := fnv.New32a()
	h.Write([]byte(m.Topic()))
	select {
	case s.reqs[h.Sum32()%uint32(len(s.reqs))] <- m:
	default:
		// The terminal asks again after its stall timeout.
		s.log.Warn("busy: request dropped", "topic", m.Topic())
	}
}

func (s *blobServer) work(ctx context.Context, ch <-chan mqtt.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			dev, tid, _, _ := tmsproto.ParseBlobTopic(m.Topic())
			req, err := blob.DecodeRequest(tid, m.Payload())
			if err != nil {
				s.log.Warn("bad blob request", "topic", m.Topic(), "err", err)
				continue
			}
			s.log.Info("blob request", "device", dev, "transfer", tid, "offset", req.Offset, "length", req.Length)
			if err := s.blob.Handle(ctx, m.Topic(), m.Payload()); err != nil && ctx.Err() == nil {
				s.log.Warn("blob request not answered", "device", dev, "transfer", tid, "err", err)
			}
		}
	}
}

func (s *blobServer) publish(ctx context.Context, topic string, payload []byte) error {
	tok := s.pc.Publish(topic, 1, false, payload)
	t := time.NewTimer(servePublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no PUBACK")
	}
}

// serveFile is one file of the served directory, kept open: it is served as it was hashed
// even if someone replaces it meanwhile.
type serveFile struct {
	id, name string
	size     int64
	f        *os.File
}

type serveDir struct {
	list  []*serveFile
	byTID map[string]*serveFile
}

func openServeDir(dir string) (*serveDir, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &serveDir{byTID: map[string]*serveFile{}}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		sf, err := hashServeFile(filepath.Join(dir, e.Name()))
		if err != nil {
			d.close()
			return nil, err
		}
		d.list = append(d.list, sf)
		d.byTID[sf.id] = sf
	}
	// Names second: a content id always wins over a file that happens to be named like one.
	for _, sf := range d.list {
		if _, taken := d.byTID[sf.name]; !taken && blob.ValidID(sf.name) == nil {
			d.byTID[sf.name] = sf
		}
	}
	sort.Slice(d.list, func(i, j int) bool { return d.list[i].name < d.list[j].name })
	return d, nil
}

func hashServeFile(path string) (*serveFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("hash %s: %w", path, err)
	}
	return &serveFile{id: blob.ID(h.Sum(nil)), name: filepath.Base(path), size: n, f: f}, nil
}

func (d *serveDir) open(tid string) (io.ReaderAt, int64, bool) {
	sf, ok := d.byTID[tid]
	if !ok {
		return nil, 0, false
	}
	return sf.f, sf.size, true
}

func (d *serveDir) close() {
	for _, sf := range d.list {
		sf.f.Close()
	}
}
