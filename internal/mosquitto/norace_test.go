//go:build !race

package mosquitto_test

const raceEnabled = false
