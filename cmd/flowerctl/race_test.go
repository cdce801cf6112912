//go:build race

package main

// raceEnabled: the race detector is on, so skip running GoMLX graphs.
const raceEnabled = true
