package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/diag"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/agent/store"
)

// bucketDiagParams holds the parameters a technician set (name → value).
var bucketDiagParams = []byte("diag.params")

// Local parameter names.
const (
	ParamLogLevel  = "logLevel"
	ParamTMSBroker = "tmsBroker"
)

var logLevels = []string{"debug", "info", "warn", "error"}

func (a *Agent) openDiagParams() error {
	return a.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDiagParams)
		return err
	})
}

func (a *Agent) storedParam(name string) (value string, ok bool) {
	_ = a.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDiagParams); b != nil {
			if v := b.Get([]byte(name)); v != nil {
				value, ok = string(v), true
			}
		}
		return nil
	})
	return value, ok
}

func (a *Agent) storeParam(ctx context.Context, name, value string, clear bool) error {
	return a.commit.Do(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		b := tx.Bucket(bucketDiagParams)
		if clear {
			return b.Delete([]byte(name))
		}
		return b.Put([]byte(name), []byte(value))
	})
}

// applyStoredParams applies what a technician set before this start: the log level, and the
// broker override (which only a start can apply).
func (a *Agent) applyStoredParams() {
	a.diag.broker, a.diag.fileBroker = a.cfg.TMS.Broker, a.cfg.TMS.Broker
	if v, ok := a.storedParam(ParamLogLevel); ok && a.diag.level != nil {
		if lv, err := logging.ParseLevel(v); err == nil {
			a.diag.level.SetLevel(lv)
		}
	}
	if v, ok := a.storedParam(ParamTMSBroker); ok {
		if err := config.ValidBroker(v); err != nil {
			a.log.Warn("technician's TMS broker ignored", "err", err)
			return
		}
		a.log.Info("TMS broker set by a technician", "broker", displayBroker(v), "file", displayBroker(a.cfg.TMS.Broker))
		// The link and its TLS settings are made from the configuration after this.
		a.diag.broker, a.cfg.TMS.Broker = v, v
	}
}

// displayBroker is a broker URL without any credentials in it.
func displayBroker(b string) string {
	u, err := url.Parse(b)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

func (a *Agent) localParams() []diag.LocalParam {
	level := diag.LocalParam{Name: ParamLogLevel, Choices: logLevels,
		Description: "How much the agent logs; applies at once and is kept across restarts."}
	if a.diag.level != nil {
		level.Value = levelName(a.diag.level.Level())
	} else {
		level.Value = a.cfg.Log.Level
	}
	broker := diag.LocalParam{Name: ParamTMSBroker, Value: displayBroker(a.diag.broker),
		Description: "The TMS broker URL (tcp://host:1883, ssl://host:8883); empty returns to the configuration file's. Applies at the next start."}
	if v, ok := a.storedParam(ParamTMSBroker); ok && v != a.diag.broker {
		broker.Value, broker.Pending = displayBroker(v), true
	} else if !ok && a.diag.broker != a.diag.fileBroker {
		broker.Value, broker.Pending = displayBroker(a.diag.fileBroker), true
	}
	return []diag.LocalParam{level, broker}
}

type paramsSet struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (a *Agent) setParam(ctx context.Context, raw json.RawMessage) (any, error) {
	var p paramsSet
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	v := strings.TrimSpace(p.Value)
	switch p.Name {
	case ParamLogLevel:
		if a.diag.level == nil {
			return nil, errors.New("this agent's log level cannot be changed while it runs")
		}
		lv, err := logging.ParseLevel(v)
		if err != nil {
			return nil, &diag.ParamError{Reason: "logLevel: want debug, info, warn or error"}
		}
		if err := a.storeParam(ctx, ParamLogLevel, levelName(lv), false); err != nil {
			return nil, err
		}
		a.diag.level.SetLevel(lv)
		a.log.Info("log level set by a technician", "level", levelName(lv))
	case ParamTMSBroker:
		if v != "" {
			if err := config.ValidBroker(v); err != nil {
				return nil, &diag.ParamError{Reason: "tmsBroker: " + err.Error()}
			}
		}
		if err := a.storeParam(ctx, ParamTMSBroker, v, v == ""); err != nil {
			return nil, err
		}
		a.log.Info("TMS broker set by a technician; applies at the next start", "broker", displayBroker(v))
	default:
		return nil, &diag.ParamError{Reason: fmt.Sprintf("name: %q is not a local parameter (logLevel, tmsBroker)", p.Name)}
	}
	return a.localParams(), nil
}
