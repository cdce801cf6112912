//go:build goexperiment.simd && amd64

package model

import (
	"simd/archsimd"
	"unsafe"
)

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

// lanesAvailable reports whether this CPU runs the AVX-512 lanes.
func lanesAvailable() bool { return archsimd.X86.AVX512() }

// maxLaneBatch is the largest batch momentumLanes takes.
const maxLaneBatch = 64

// momentumLanes is momentumRows in AVX-512 lanes, four rows and 16
// columns at a time, from v in chunks (vc, see momentumStep): each of v's
// vectors is loaded once for the four rows, the gradients summed in
// registers, then the velocities and the weights read and written once.
// fc6's step (67M weights, batch 32) takes 83 ms on the 2-core AVX-512
// machine, where the graph's product and four element-wise passes took
// 351. It reports false, having done nothing, where the CPU lacks
// AVX-512, n is not a multiple of 16 or the batch is over maxLaneBatch.
// The rows' values of a are spread to 16 lanes each by integer moves (as
// floats they would go through SSE registers, slow after AVX-512 code: see
// transformLanes).
func momentumLanes(w, vel, aT, vc []float32, mask []uint32, k0, k1, b, n int, lr, momentum float32) bool {
	if !archsimd.X86.AVX512() || n%16 != 0 || b < 1 || b > maxLaneBatch || k1 <= k0 {
		return false
	}
	var spread [4][maxLaneBatch * 16]uint32
	var lanes [4][]float32
	for q := range lanes {
		lanes[q] = unsafe.Slice((*float32)(unsafe.Pointer(&spread[q][0])), b*16)
	}
	bits := unsafe.Slice((*uint32)(unsafe.Pointer(&aT[0])), len(aT))
	lrv, mv := archsimd.BroadcastFloat32x16(lr), archsimd.BroadcastFloat32x16(momentum)
	for r := k0; r < k1; r += 4 {
		rows := min(4, k1-r)
		for q := range 4 {
			row := r + min(q, rows-1) // past the last row: the last again, not stored
			for j, x := range bits[row*b : (row+1)*b] {
				s := spread[q][j*16 : (j+1)*16]
				for i := range s {
					s[i] = x
				}
			}
		}
		l0, l1, l2, l3 := lanes[0], lanes[1], lanes[2], lanes[3]
		for c := 0; c < n; c += 16 {
			chunk := vc[c*b : (c+16)*b]
			x := archsimd.LoadFloat32x16Slice(chunk)
			g0 := x.Mul(archsimd.LoadFloat32x16Slice(l0))
			g1 := x.Mul(archsimd.LoadFloat32x16Slice(l1))
			g2 := x.Mul(archsimd.LoadFloat32x16Slice(l2))
			g3 := x.Mul(archsimd.LoadFloat32x16Slice(l3))
			for j := 16; j < b*16; j += 16 {
				x = archsimd.LoadFloat32x16Slice(chunk[j:])
				g0 = x.MulAdd(archsimd.LoadFloat32x16Slice(l0[j:]), g0)
				g1 = x.MulAdd(archsimd.LoadFloat32x16Slice(l1[j:]), g1)
				g2 = x.MulAdd(archsimd.LoadFloat32x16Slice(l2[j:]), g2)
				g3 = x.MulAdd(archsimd.LoadFloat32x16Slice(l3[j:]), g3)
			}
			i := r*n + c
			momentumStore(w, vel, mask, i, g0, mv, lrv)
			if rows > 1 {
				momentumStore(w, vel, mask, i+n, g1, mv, lrv)
			}
			if rows > 2 {
				momentumStore(w, vel, mask, i+2*n, g2, mv, lrv)
			}
			if rows > 3 {
				momentumStore(w, vel, mask, i+3*n, g3, mv, lrv)
			}
		}
	}
	archsimd.ClearAVXUpperBits()
	return true
}

// momentumStore writes 16 lanes of momentumLanes' step from index i (a
// multiple of 16): vel' = m·vel + g, w' = w - lr·vel', g masked by draw
// i/16's bits 7 to 22 where mask is not nil.
func momentumStore(w, vel []float32, mask []uint32, i int, g, m, lr archsimd.Float32x16) {
	if mask != nil {
		g = g.Masked(archsimd.Mask32x16FromBits(uint16(mask[i/16] >> 7)))
	}
	nv := archsimd.LoadFloat32x16Slice(vel[i:]).MulAdd(m, g)
	nv.StoreSlice(vel[i:])
	archsimd.LoadFloat32x16Slice(w[i:]).Sub(nv.Mul(lr)).StoreSlice(w[i:])
}

// maskLanes is maskWeights on draws i0 to i1 in AVX-512 lanes, a draw's
// 16 weights at a time. It reports false, having done nothing, where the
// CPU lacks AVX-512.
func maskLanes(dst, w []float32, bits []uint32, i0, i1 int) bool {
	if !archsimd.X86.AVX512() {
		return false
	}
	for i := i0; i < i1; i++ {
		m := archsimd.Mask32x16FromBits(uint16(bits[i] >> 7))
		archsimd.LoadFloat32x16Slice(w[i*16:]).Masked(m).StoreSlice(dst[i*16:])
	}
	archsimd.ClearAVXUpperBits()
	return true
}

// denseLanes adds x·w to y for rows k0 to k1 of w (x [m, kAll], w [kAll,
// n], y [m, n], m at most maxDenseRows, n a multiple of 16) in AVX-512
// lanes, 16 rows of w at a time: their 16-column vectors, read once, held
// in registers for every row of x; x's values spread to lanes by integer
// moves (see momentumLanes). It reports false, having done nothing, where
// the CPU lacks AVX-512 or the shapes do not fit.
func denseLanes(y, x, w []float32, m, kAll, k0, k1, n int) bool {
	if !archsimd.X86.AVX512() || n%16 != 0 || m < 1 || m > maxDenseRows {
		return false
	}
	var spread [maxDenseRows * 16 * 16]uint32
	lanes := unsafe.Slice((*float32)(unsafe.Pointer(&spread[0])), len(spread))
	bits := unsafe.Slice((*uint32)(unsafe.Pointer(&x[0])), len(x))
	for k := k0; k < k1; k += 16 {
		rows := min(16, k1-k)
		for i := range m {
			for r := range 16 {
				v := uint32(0)
				if r < rows {
					v = bits[i*kAll+k+r]
				}
				s := spread[(i*16+r)*16 : (i*16+r+1)*16]
				for l := range s {
					s[l] = v
				}
			}
		}
		last := k + rows - 1 // rows past the block read the last again, times zero
		for c := 0; c < n; c += 16 {
			w0 := archsimd.LoadFloat32x16Slice(w[k*n+c:])
			w1 := archsimd.LoadFloat32x16Slice(w[min(k+1, last)*n+c:])
			w2 := archsimd.LoadFloat32x16Slice(w[min(k+2, last)*n+c:])
			w3 := archsimd.LoadFloat32x16Slice(w[min(k+3, last)*n+c:])
			w4 := archsimd.LoadFloat32x16Slice(w[min(k+4, last)*n+c:])
			w5 := archsimd.LoadFloat32x16Slice(w[min(k+5, last)*n+c:])
			w6 := archsimd.LoadFloat32x16Slice(w[min(k+6, last)*n+c:])
			w7 := archsimd.LoadFloat32x16Slice(w[min(k+7, last)*n+c:])
			w8 := archsimd.LoadFloat32x16Slice(w[min(k+8, last)*n+c:])
			w9 := archsimd.LoadFloat32x16Slice(w[min(k+9, last)*n+c:])
			w10 := archsimd.LoadFloat32x16Slice(w[min(k+10, last)*n+c:])
			w11 := archsimd.LoadFloat32x16Slice(w[min(k+11, last)*n+c:])
			w12 := archsimd.LoadFloat32x16Slice(w[min(k+12, last)*n+c:])
			w13 := archsimd.LoadFloat32x16Slice(w[min(k+13, last)*n+c:])
			w14 := archsimd.LoadFloat32x16Slice(w[min(k+14, last)*n+c:])
			w15 := archsimd.LoadFloat32x16Slice(w[min(k+15, last)*n+c:])
			for i := range m {
				l := lanes[i*256 : (i+1)*256]
				acc := archsimd.LoadFloat32x16Slice(y[i*n+c:])
				acc = w0.MulAdd(archsimd.LoadFloat32x16Slice(l[0:]), acc)
				acc = w1.MulAdd(archsimd.LoadFloat32x16Slice(l[16:]), acc)
				acc = w2.MulAdd(archsimd.LoadFloat32x16Slice(l[32:]), acc)
				acc = w3.MulAdd(archsimd.LoadFloat32x16Slice(l[48:]), acc)
				acc = w4.MulAdd(archsimd.LoadFloat32x16Slice(l[64:]), acc)
				acc = w5.MulAdd(archsimd.LoadFloat32x16Slice(l[80:]), acc)
				acc = w6.MulAdd(archsimd.LoadFloat32x16Slice(l[96:]), acc)
				acc = w7.MulAdd(archsimd.LoadFloat32x16Slice(l[112:]), acc)
				acc = w8.MulAdd(archsimd.LoadFloat32x16Slice(l[128:]), acc)
				acc = w9.MulAdd(archsimd.LoadFloat32x16Slice(l[144:]), acc)
				acc = w10.MulAdd(archsimd.LoadFloat32x16Slice(l[160:]), acc)
				acc = w11.MulAdd(archsimd.LoadFloat32x16Slice(l[176:]), acc)
				acc = w12.MulAdd(archsimd.LoadFloat32x16Slice(l[192:]), acc)
				acc = w13.MulAdd(archsimd.LoadFloat32x16Slice(l[208:]), acc)
				acc = w14.MulAdd(archsimd.LoadFloat32x16Slice(l[224:]), acc)
				acc = w15.MulAdd(archsimd.LoadFloat32x16Slice(l[240:]), acc)
				acc.StoreSlice(y[i*n+c:])
			}
		}
	}
	archsimd.ClearAVXUpperBits()
	return true
}

// maxDenseRows is the most rows of x denseLanes takes.
const maxDenseRows = 32
