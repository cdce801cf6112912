package model

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// TestTunedNetworkAgrees checks that the go backend's faster formulations
// (every paramTuning bit) predict what the straightforward one does, within
// fp32 tolerance, for the original network and for DropConnect's, at full
// size and a batch of 4, so that space-to-depth and every Winograd form are
// in the graphs: model1 runs F(4x4) for its 5x5 and 3x3 convolutions, model5
// F(4x4) for its 5x5 and F(2x2) for its 3x3 ones.
func TestTunedNetworkAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("builds full-size networks: skipped under -short")
	}
	b := testBackend(t)
	const n = 4
	r := rand.New(rand.NewPCG(1, 2))
	images := make([]float32, n*227*227*3)
	for i := range images {
		images[i] = r.Float32()
	}
	for _, name := range []string{"model1", "model5"} {
		plain := newTunedOpts(t, b, name, 0, Options{})
		tuned := newTunedOpts(t, b, name, tuningAll, Options{})
		want, err := plain.Predict(context.Background(), images, n)
		if err != nil {
			t.Fatalf("%s, straightforward: Predict = %v", name, err)
		}
		got, err := tuned.Predict(context.Background(), images, n)
		if err != nil {
			t.Fatalf("%s, tuned: Predict = %v", name, err)
		}
		for i := range want {
			for c := range want[i] {
				if d := math.Abs(float64(got[i][c] - want[i][c])); d > 1e-4 {
					t.Fatalf("%s: image %d class %d: tuned %v, straightforward %v (|d| %.2g > 1e-4)", name, i, c, got[i][c], want[i][c], d)
				}
			}
		}
	}
}
