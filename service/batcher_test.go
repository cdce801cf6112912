package service

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/flowerd/flowerd/model"
)

// TestBatcher sends concurrent requests through a batcher and checks that
// each gets the rows a lone forward pass gives it, and that some passes
// merged several requests.
func TestBatcher(t *testing.T) {
	v, _ := model.LookupVariant("model2")
	const size = 67
	m, err := model.New(testBackend(t), v, model.Options{ImageSize: size})
	if err != nil {
		t.Fatal(err)
	}
	per := size * size * 3
	r := rand.New(rand.NewPCG(1, 2))
	const clients = 8
	inputs := make([][]float32, clients)
	want := make([][][]float32, clients)
	for i := range inputs {
		n := 1 + i%3
		inputs[i] = make([]float32, n*per)
		for j := range inputs[i] {
			inputs[i][j] = r.Float32()
		}
		if want[i], err = m.Predict(context.Background(), inputs[i], n); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := newBatcher(m, 8, 5*time.Millisecond)
	done := make(chan struct{})
	go func() { b.run(ctx); close(done) }()

	var wg sync.WaitGroup
	results := make([]batchResult, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			results[i], errs[i] = b.predict(context.Background(), inputs[i], 1+i%3)
		})
	}
	wg.Wait()
	merged := false
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		merged = merged || results[i].batch > 1+i%3
		if len(results[i].probs) != len(want[i]) {
			t.Fatalf("request %d: %d rows; want %d", i, len(results[i].probs), len(want[i]))
		}
		for row := range want[i] {
			for c := range want[i][row] {
				if d := math.Abs(float64(results[i].probs[row][c] - want[i][row][c])); d > 1e-5 {
					t.Fatalf("request %d row %d class %d: %v batched, %v alone", i, row, c, results[i].probs[row][c], want[i][row][c])
				}
			}
		}
	}
	if !merged {
		t.Error("no forward pass merged two requests")
	}
	// A cancelled request gets its context's error, and a stopped batcher
	// refuses new work.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := b.predict(cctx, inputs[0], 1); err == nil {
		t.Error("predict with a cancelled context succeeded")
	}
	cancel()
	<-done
	if _, err := b.predict(context.Background(), inputs[0], 1); code(err) != code(errShuttingDown) {
		t.Errorf("predict after stop = %v; want Unavailable", err)
	}
}
