//go:build race

package clients_test

// raceEnabled: the race detector is on, so skip running GoMLX graphs.
const raceEnabled = true
