package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// BenchmarkConvForms times the go backend's formulations of one stride-1
// convolution layer at the shapes the variants meet, forward (infer) and
// forward plus both gradients (train), so a formulation can be chosen per
// layer from figures rather than from FLOP counts alone. E.g.
// `go test ./model/ -run '^$' -bench ConvForms/conv4 -benchtime 5x`.
func BenchmarkConvForms(b *testing.B) {
	backend := testBackend(b).b
	layers := []struct {
		name             string
		batch, side, cin int
		kernel, cout     int
	}{
		{"conv2-model1", 32, 29, 96, 5, 256},
		{"conv2-model2", 32, 19, 96, 5, 256},
		{"conv4-model1", 32, 15, 384, 3, 384},
		{"conv4-model4", 32, 10, 384, 3, 384},
		{"conv4-model2", 32, 7, 384, 3, 384},
		{"conv2-model1-b1", 1, 29, 96, 5, 256},
		{"conv2-model2-b1", 1, 19, 96, 5, 256},
		{"conv4-model1-b1", 1, 15, 384, 3, 384},
		{"conv4-model4-b1", 1, 10, 384, 3, 384},
		{"conv4-model2-b1", 1, 7, 384, 3, 384},
	}
	forms := []struct {
		name string
		conv func(x, k *Node, custom bool) *Node
	}{
		{"im2col", func(x, k *Node, custom bool) *Node {
			return conv2D(x, k, 1, ConvIm2col, tuning{customGrad: custom})
		}},
		{"winograd2", func(x, k *Node, custom bool) *Node {
			return winogradConv(x, k, 2, tuning{customGrad: custom, tileGrad: true, eyeTranspose: true})
		}},
		{"winograd4", func(x, k *Node, custom bool) *Node {
			return winogradConv(x, k, 4, tuning{customGrad: custom, tileGrad: true, eyeTranspose: true})
		}},
	}
	r := rand.New(rand.NewPCG(3, 4))
	random := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		flat := make([]float32, n)
		for i := range flat {
			flat[i] = float32(r.NormFloat64())
		}
		return tensors.FromFlatDataAndDimensions(flat, dims...)
	}
	for _, l := range layers {
		x := random(l.batch, l.side, l.side, l.cin)
		k := random(l.kernel, l.kernel, l.cin, l.cout)
		for _, f := range forms {
			for _, train := range []bool{false, true} {
				mode := "infer"
				if train {
					mode = "train"
				}
				b.Run(fmt.Sprintf("%s/%s/%s", l.name, f.name, mode), func(b *testing.B) {
					exec, err := NewExec(backend, func(x, k *Node) []*Node {
						y := f.conv(x, k, train)
						if !train {
							return []*Node{y}
						}
						loss := ReduceAllSum(Mul(y, y))
						return Gradient(loss, x, k)
					})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := exec.Exec(x, k); err != nil { // compile and warm up
						b.Fatal(err)
					}
					for b.Loop() {
						out, err := exec.Exec(x, k)
						if err != nil {
							b.Fatal(err)
						}
						for _, o := range out {
							o.FinalizeAll()
						}
					}
				})
			}
		}
	}
}
