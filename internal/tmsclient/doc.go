// Package tmsclient is the TMS side of the agent's MQTT contract (agent/tmsproto): it signs
// and sends commands, follows their acknowledgements and receives the uplink of a fleet.
//
// It is shared by cmd/tmsctl, the integration tests and the fleet simulator, so it keeps the
// two properties they all rely on: nothing that reaches the client is silently dropped or
// reordered per device, and a reconnect is invisible to the caller (subscriptions come back,
// an unconfirmed command is published again and deduplicated by its id on the agent).
package tmsclient
