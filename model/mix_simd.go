//go:build goexperiment.simd && amd64

package model

import "simd/archsimd"

// transformLanes is tileGather.transform of the tile d [side², c] in
// AVX-512 lanes, 16 channels at a time, writing V's pixel k to
// out[base+k·stride:][:c]. lanes holds Bᵀ's rows, each padded with zeros
// to 6 entries, each entry in 16 lanes (tileGather.lanes). It reports
// false, having done nothing, where the CPU lacks AVX-512, the tile's
// side is not 5 or 6 (F(3x3, 3x3), F(4x4, 3x3)) or the channels are not a
// multiple of 16. It clears the vector registers' upper halves on the way
// out: the scalar float code Go compiles is SSE, which runs several times
// slower after AVX-512 leaves them dirty.
func transformLanes(out []float32, base, stride int, d, tmp, lanes []float32, side, c int) bool {
	if !archsimd.X86.AVX512() || (side != 5 && side != 6) || c%16 != 0 || len(lanes) != side*6*16 {
		return false
	}
	for v := 0; v < c; v += 16 {
		for o := range side { // along the rows: tmp's pixel (o, j)
			mixLanes(tmp, o*side*c+v, c, d, o*side*c+v, c, lanes, side)
		}
		for j := range side { // along the columns: V's pixel (i, j)
			mixLanes(out, base+j*stride+v, side*stride, tmp, j*c+v, side*c, lanes, side)
		}
	}
	archsimd.ClearAVXUpperBits()
	return true
}

// mixLanes writes the 16 lanes at dst[d0+j·ds] = Σ_l Bᵀ[j, l]·src[s0+l·ss],
// j, l < side (5 or 6), Bᵀ's entries in lanes, the inputs held in
// registers: named ones, as an array of vectors would be zeroed and
// indexed in memory, through SSE instructions. A side of 5 reads its last
// input twice, the second time times the padding's zero.
func mixLanes(dst []float32, d0, ds int, src []float32, s0, ss int, lanes []float32, side int) {
	x0 := archsimd.LoadFloat32x16Slice(src[s0:])
	x1 := archsimd.LoadFloat32x16Slice(src[s0+ss:])
	x2 := archsimd.LoadFloat32x16Slice(src[s0+2*ss:])
	x3 := archsimd.LoadFloat32x16Slice(src[s0+3*ss:])
	x4 := archsimd.LoadFloat32x16Slice(src[s0+4*ss:])
	x5 := archsimd.LoadFloat32x16Slice(src[s0+(side-1)*ss:])
	for j := range side {
		b := lanes[j*96 : (j+1)*96]
		y := x0.Mul(archsimd.LoadFloat32x16Slice(b[0:]))
		y = x1.MulAdd(archsimd.LoadFloat32x16Slice(b[16:]), y)
		y = x2.MulAdd(archsimd.LoadFloat32x16Slice(b[32:]), y)
		y = x3.MulAdd(archsimd.LoadFloat32x16Slice(b[48:]), y)
		y = x4.MulAdd(archsimd.LoadFloat32x16Slice(b[64:]), y)
		y = x5.MulAdd(archsimd.LoadFloat32x16Slice(b[80:]), y)
		y.StoreSlice(dst[d0+j*ds:])
	}
}
