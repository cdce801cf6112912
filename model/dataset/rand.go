package dataset

import "math/rand/v2"

// The split, the shuffle order and the augmentation must not change when the
// Go release does, so they use rand.PCG (a specified algorithm) directly and
// this file's own shuffle and bounded draws, not rand.Rand's helpers.

// mix hashes seeds and indices into one 64-bit value (SplitMix64 finaliser).
func mix(xs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, x := range xs {
		h ^= x
		h += 0x9e3779b97f4a7c15
		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9
		h = (h ^ (h >> 27)) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// Domains keep the random streams for different purposes apart.
const (
	domainSplit   = 1
	domainShuffle = 2
	domainAugment = 3
)

// intn returns a uniform integer in [0, n) for n > 0, without modulo bias.
func intn(r *rand.PCG, n int) int {
	un := uint64(n)
	thresh := -un % un // 2^64 mod n
	for {
		if x := r.Uint64(); x >= thresh {
			return int(x % un)
		}
	}
}

// float01 returns a uniform float64 in [0, 1).
func float01(r *rand.PCG) float64 {
	return float64(r.Uint64()>>11) / (1 << 53)
}

// permutation returns a Fisher-Yates shuffle of 0..n-1 drawn from r.
func permutation(r *rand.PCG, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := intn(r, i+1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// fnv64 hashes a string (FNV-1a), used to give each class its own stream.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
