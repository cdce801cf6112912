package model

// FLOPs counts the floating-point operations of the network for one image
// (multiply and add counted separately) in convolutions and dense layers,
// which are over 99% of the work; pooling, LRN and activations are left out.
// Training is the forward pass plus the backward pass, which costs two
// forward passes per layer except the first convolution, whose input needs
// no gradient.
func (v Variant) FLOPs(imageSize, classes int) (forward, training float64) {
	side := imageSize
	var first float64
	conv := func(cin, cout, k, stride int) {
		_, _, side = samePadding(side, k, stride)
		f := 2 * float64(side*side) * float64(k*k*cin) * float64(cout)
		if forward == 0 {
			first = f
		}
		forward += f
	}
	pool := func(stride int) { _, _, side = samePadding(side, 3, stride) }
	conv(3, 96, 11, 4)
	pool(v.PoolStrides[0])
	conv(96, 256, 5, 1)
	pool(v.PoolStrides[1])
	conv(256, 384, 3, 1)
	conv(384, 384, 3, 1)
	conv(384, 256, 3, 1)
	pool(v.PoolStrides[2])
	in := side * side * 256
	for _, out := range []int{denseUnits, denseUnits, classes} {
		forward += 2 * float64(in) * float64(out)
		in = out
	}
	return forward, 3*forward - first
}

// denseInputs is the width of fc6's input on imageSize-pixel images: conv5's
// pooled map, flattened.
func (v Variant) denseInputs(imageSize int) int {
	side := imageSize
	for _, layer := range [][2]int{{11, 4}, {3, v.PoolStrides[0]}, {3, v.PoolStrides[1]}, {3, v.PoolStrides[2]}} {
		_, _, side = samePadding(side, layer[0], layer[1]) // conv2-5 keep the side
	}
	return side * side * 256
}
