package broker

import mqtt "github.com/mochi-mqtt/server/v2"

// WithTestHooks returns opts with hooks that Start adds ahead of its own.
func WithTestHooks(opts Options, hooks ...mqtt.Hook) Options {
	opts.testHooks = hooks
	return opts
}
