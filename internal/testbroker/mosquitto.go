package testbroker

import (
	"sort"

	"github.com/posagent/posagent/internal/mosquitto"
)

// startMosquitto starts the broker: the first time with a new configuration on a free port,
// later again on the same port so that clients reconnect to the same URL.
func (b *Broker) startMosquitto() error {
	if b.mosq != nil {
		return b.mosq.Start()
	}
	ids := make([]string, 0, len(b.devices))
	for id := range b.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	srv, err := mosquitto.Start(mosquitto.Options{
		Dir:            b.dir,
		TMSUser:        tmsUser,
		TMSPassword:    b.tmsPass,
		Devices:        ids,
		DevicePassword: func(id string) string { return b.devices[id] },
		Persistence:    true,
		Log:            b.log,
		Timeout:        startTimeout,
	})
	if err != nil {
		return err
	}
	b.mosq = srv
	b.port = srv.Port()
	return nil
}
