//go:build !(goexperiment.simd && amd64)

package model

// transformLanes reports false: only a GOEXPERIMENT=simd build on amd64
// has SIMD lanes (mix_simd.go).
func transformLanes(out []float32, base, stride int, d, tmp, lanes []float32, side, c int) bool {
	return false
}
