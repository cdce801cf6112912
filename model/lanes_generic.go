//go:build !(goexperiment.simd && amd64)

package model

// transformLanes reports false: only a GOEXPERIMENT=simd build on amd64
// has SIMD lanes (lanes_simd.go).
func transformLanes(out []float32, base, stride int, d, tmp, lanes []float32, side, c int) bool {
	return false
}

// momentumLanes reports false: only a GOEXPERIMENT=simd build on amd64 has
// SIMD lanes (lanes_simd.go).
func momentumLanes(w, vel, aT, vc []float32, mask []uint32, k0, k1, b, n int, lr, momentum float32) bool {
	return false
}

// maskLanes reports false: only a GOEXPERIMENT=simd build on amd64 has SIMD
// lanes (lanes_simd.go).
func maskLanes(dst, w []float32, bits []uint32, i0, i1 int) bool { return false }

// maxDenseRows is the most rows of x denseLanes would take.
const maxDenseRows = 32

// denseLanes reports false: only a GOEXPERIMENT=simd build on amd64 has
// SIMD lanes (lanes_simd.go).
func denseLanes(y, x, w []float32, m, kAll, k0, k1, n int) bool { return false }

// lanesAvailable reports false: this build has no SIMD lanes.
func lanesAvailable() bool { return false }

// maxLaneBatch is the largest batch momentumLanes would take.
const maxLaneBatch = 64
