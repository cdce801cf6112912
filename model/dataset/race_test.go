//go:build race

package dataset_test

// raceEnabled is true under -race, where decoding is about 20x slower.
const raceEnabled = true
