package model

import (
	"testing"
)

// BenchmarkFormulations runs the go backend's current formulation next to
// the legacy one (paramLegacy) in the same process, for model1 and model2 at
// full size: classify at batch 1, inference at batch 16, training at batch
// 32. Timings on a shared machine drift, so compare the two within one run,
// e.g. `go test ./model/ -run '^$' -bench Formulations -benchtime 3x -count 2`
// (the runs alternate legacy, new, legacy, new).
func BenchmarkFormulations(b *testing.B) {
	backend, err := NewBackend("go")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"model1", "model2"} {
		v, err := LookupVariant(name)
		if err != nil {
			b.Fatal(err)
		}
		fwd, train := v.FLOPs(ImageSize, NumClasses)
		for _, legacy := range []bool{true, false} {
			form := "new"
			if legacy {
				form = "legacy"
			}
			var m *Model
			setup := func(b *testing.B) {
				if m != nil {
					return
				}
				if m, err = New(backend, v, Options{}); err != nil {
					b.Fatal(err)
				}
				// Graphs are built at their first run, after this.
				m.store.RootScope().SetParam(paramLegacy, legacy)
				m.served.Load().store.RootScope().SetParam(paramLegacy, legacy)
			}
			b.Run(name+"/"+form+"/classify-b1", func(b *testing.B) {
				setup(b)
				benchPredict(b, m, 1, fwd)
			})
			b.Run(name+"/"+form+"/infer-b16", func(b *testing.B) {
				setup(b)
				benchPredict(b, m, 16, fwd)
			})
			b.Run(name+"/"+form+"/train-b32", func(b *testing.B) {
				setup(b)
				benchTrain(b, m, 32, train)
			})
			m = nil // free it before the next formulation
		}
	}
}
