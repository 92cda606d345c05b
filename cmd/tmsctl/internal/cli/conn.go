package cli

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/posagent/posagent/internal/tmsclient"
)

// DefaultBroker is used when neither --broker nor TMS_BROKER is given.
const DefaultBroker = "tcp://127.0.0.1:1883"

// connFlags are the broker connection flags every networked subcommand shares.
type connFlags struct {
	broker, username, password, clientID string
	tls                                  tmsclient.TLSFiles
	connectTimeout                       time.Duration
	verbose                              bool
}

func (cf *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.broker, "broker", DefaultBroker, "broker `URL`: tcp://, mqtt://, ws://; with TLS ssl://, mqtts://, wss:// (env TMS_BROKER)")
	fs.StringVar(&cf.username, "username", "", "MQTT username")
	// No default shown: the help text must never print a password taken from the environment.
	fs.StringVar(&cf.password, "password", "", "MQTT password (env TMS_PASSWORD)")
	fs.StringVar(&cf.clientID, "client-id", "", "MQTT client id (default: random)")
	fs.StringVar(&cf.tls.CAFile, "tls-ca", "", "PEM `file` of the CA that signed the broker certificate (default: system roots)")
	fs.StringVar(&cf.tls.CertFile, "tls-cert", "", "PEM client certificate `file`, for mutual TLS")
	fs.StringVar(&cf.tls.KeyFile, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&cf.tls.ServerName, "tls-server-name", "", "`name` to verify the broker certificate against (default: the URL host)")
	fs.BoolVar(&cf.tls.Insecure, "tls-insecure", false, "do not verify the broker certificate (test brokers only)")
	fs.DurationVar(&cf.connectTimeout, "connect-timeout", 15*time.Second, "give up connecting after this long")
	fs.BoolVar(&cf.verbose, "v", false, "log connection events on stderr")
}

// connect applies the environment fallbacks for flags not given and connects.
func (cf *connFlags) connect(ctx context.Context, fs *flag.FlagSet, env Env) (*tmsclient.Client, error) {
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
	level := slog.LevelWarn
	if cf.verbose {
		level = slog.LevelDebug
	}
	ctx, cancel := context.WithTimeout(ctx, cf.connectTimeout)
	defer cancel()
	c, err := tmsclient.Connect(ctx, tmsclient.Options{
		Broker:       cf.broker,
		Username:     cf.username,
		Password:     cf.password,
		ClientID:     cf.clientID,
		TLS:          tlsConf,
		CleanSession: true,
		Logger:       slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
