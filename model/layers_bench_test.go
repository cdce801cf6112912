package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
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
	for _, l := range layers {
		x := randomTensor(r, l.batch, l.side, l.side, l.cin)
		k := randomTensor(r, l.kernel, l.kernel, l.cin, l.cout)
		for _, f := range forms {
			for _, train := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/%s/%s", l.name, f.name, modeName(train)), func(b *testing.B) {
					benchLayer(b, backend, func(x, k *Node) *Node { return f.conv(x, k, train) }, train, x, k)
				})
			}
		}
	}
}

// BenchmarkNarrowProduct times fc8's product ([batch, 4096]·[4096, 17]),
// forward (infer) and forward plus both gradients (train), as the backend
// runs it and with matMul's narrowPad.
func BenchmarkNarrowProduct(b *testing.B) {
	backend := testBackend(b).b
	r := rand.New(rand.NewPCG(3, 4))
	w := randomTensor(r, 4096, NumClasses)
	for _, batch := range []int{1, 16, 32} {
		x := randomTensor(r, batch, 4096)
		for _, pad := range []bool{false, true} {
			for _, train := range []bool{false, true} {
				t := tuning{customGrad: train, eyeTranspose: true, narrowPad: pad}
				b.Run(fmt.Sprintf("b%d/pad=%v/%s", batch, pad, modeName(train)), func(b *testing.B) {
					benchLayer(b, backend, func(x, w *Node) *Node { return matMul(x, w, t) }, train, x, w)
				})
			}
		}
	}
}

// modeName names a benchmark's mode: train or infer.
func modeName(train bool) string {
	if train {
		return "train"
	}
	return "infer"
}

// benchLayer times layer(x, k), and with train its gradients for x and k
// of the sum of its squares too.
func benchLayer(b *testing.B, backend compute.Backend, layer func(x, k *Node) *Node, train bool, x, k *tensors.Tensor) {
	exec, err := NewExec(backend, func(x, k *Node) []*Node {
		y := layer(x, k)
		if !train {
			return []*Node{y}
		}
		return Gradient(ReduceAllSum(Mul(y, y)), x, k)
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
}

// randomTensor is a float32 tensor of the given dimensions, normal values
// drawn from r.
func randomTensor(r *rand.Rand, dims ...int) *tensors.Tensor {
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
