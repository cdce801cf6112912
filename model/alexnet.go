package model

import (
	"slices"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads best with the ops unqualified
	gmx "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Hyperparameter keys read by AlexNet from its scope. A store built for a
// variant carries them, so the network is a function of the store alone.
const (
	// ParamPoolStrides ([]int, 3 values): strides of the three max pools.
	ParamPoolStrides = "pool_strides"
	// ParamRegularization (string): "dropout" or "dropconnect".
	ParamRegularization = "regularization"
	// ParamKeepProbabilities ([]float64, 2 values): keep probability of each
	// 4096-wide dense layer's units (dropout) or weights (DropConnect).
	ParamKeepProbabilities = "keep_probabilities"
	// ParamNumClasses (int): width of the output layer. Default 17.
	ParamNumClasses = "num_classes"
	// ParamConvImpl (string): ConvIm2col or ConvBuiltin.
	ParamConvImpl = "conv_impl"
	// ParamPoolImpl (string): PoolSlices or PoolBuiltin.
	ParamPoolImpl = "pool_impl"
	// ParamInitSeed (int64): seed of the initial weights.
	ParamInitSeed = "init_seed"

	// paramTuning (int): which of the go backend's faster formulations to
	// use, a set of tuning* bits; 0 is the straightforward formulation. For
	// same-process A/B benchmarks and tests. Default tuningAll.
	paramTuning = "tuning"
)

// Bits of paramTuning, one per field of tuning.
const (
	tuningCustomGrad = 1 << iota
	tuningSpaceToDepth
	tuningWinograd
	tuningWinograd5
	tuningDropConnectOut
	tuningWinograd4
	tuningTileGrad
	tuningSpaceToDepthWinograd
	tuningLRNGrad
	tuningPoolFirst
	tuningDropConnectBits
	tuningPoolTiles
	tuningServedKernels
	tuningUpdateIdentity
	tuningPoolTilesPadded
	tuningEyeTranspose
	tuningHostTiles
	tuningTileChain
	tuningHostTransform
	tuningNarrowPad
	tuningAlignedPool
	tuningHostUpdate
	tuningHostDense
	tuningAll = tuningCustomGrad | tuningSpaceToDepth | tuningWinograd | tuningWinograd5 | tuningDropConnectOut |
		tuningWinograd4 | tuningTileGrad | tuningSpaceToDepthWinograd | tuningLRNGrad | tuningPoolFirst |
		tuningDropConnectBits | tuningPoolTiles | tuningServedKernels |
		tuningUpdateIdentity | tuningPoolTilesPadded | tuningEyeTranspose | tuningHostTiles | tuningTileChain |
		tuningHostTransform | tuningNarrowPad | tuningAlignedPool | tuningHostUpdate | tuningHostDense
)

// denseUnits is the width of fc6 and fc7.
const denseUnits = 4096

// NumClasses is the number of Oxford 17 Flowers classes.
const NumClasses = 17

// FlowerClasses returns the Oxford 17 Flowers class names in label order:
// sorted, as the dataset loader numbers class folders.
func FlowerClasses() []string {
	return []string{"bluebell", "buttercup", "coltsfoot", "cowslip", "crocus", "daffodil", "daisy", "dandelion",
		"fritillary", "iris", "lilyvalley", "pansy", "snowdrop", "sunflower", "tigerlily", "tulip", "windflower"}
}

// ImageSize is the side of the square input images.
const ImageSize = 227

// setVariantParams writes the hyperparameters of v into the store's root scope.
func setVariantParams(store *gmx.Store, v Variant, numClasses int, convImpl, poolImpl string) {
	root := store.RootScope()
	keep := v.KeepProbabilities()
	root.SetParam(ParamPoolStrides, v.PoolStrides[:])
	root.SetParam(ParamRegularization, string(v.Regularization))
	root.SetParam(ParamKeepProbabilities, keep[:])
	root.SetParam(ParamNumClasses, numClasses)
	root.SetParam(ParamConvImpl, convImpl)
	root.SetParam(ParamPoolImpl, poolImpl)
}

// conv1's shape, which the host's gather of its tiles (tileGather) needs too.
const (
	conv1Kernel = 11
	conv1Stride = 4
)

// AlexNet builds the study's network on images [batch, H, W, 3] (values in
// [0,1]) and returns the logits [batch, classes]. The layers are tflearn's:
//
//	conv 96 11x11/4 relu -> maxpool 3/S1 -> LRN
//	conv 256 5x5 relu    -> maxpool 3/S2 -> LRN
//	conv 384 3x3 relu -> conv 384 3x3 relu -> conv 256 3x3 relu -> maxpool 3/S3 -> LRN
//	dense 4096 tanh -> reg -> dense 4096 tanh -> reg -> dense classes (softmax in the loss)
//
// with 'SAME' padding everywhere. Dropout and DropConnect are active only
// when training is true.
func AlexNet(scope *gmx.Scope, images *Node, training bool) *Node {
	return alexNet(scope, images, images.Shape().Dimensions[1], training, false, false, nil)
}

// alexNet is AlexNet on images of size x size pixels, or on conv1's
// Winograd tiles gathered from them on the host (a rank-6 input, see
// tileGather and Model.batchInput); with record set (inference only), each
// Winograd convolution also stores its transformed kernel in its scope,
// for the inference graphs built later on the same store (see
// Model.transformKernels), and it stops after the convolutions. With
// features set and the tuning's hostDense, it stops at conv5's flattened
// features [batch, K], for the host's dense head (denseHead). taps, in a
// training graph, are the dense layers whose weights the host updates
// (newDenseTaps).
func alexNet(scope *gmx.Scope, images *Node, size int, training, record, features bool, taps map[string]*denseTap) *Node {
	strides := gmx.GetParamOr(scope, ParamPoolStrides, []int{2, 2, 2})
	reg := Regularization(gmx.GetParamOr(scope, ParamRegularization, string(Dropout)))
	keep := gmx.GetParamOr(scope, ParamKeepProbabilities, []float64{0.5, 0.5})
	classes := gmx.GetParamOr(scope, ParamNumClasses, NumClasses)
	convImpl := gmx.GetParamOr(scope, ParamConvImpl, ConvIm2col)
	poolImpl := gmx.GetParamOr(scope, ParamPoolImpl, PoolSlices)
	t := tuningOf(scope, training)
	if record && convImpl == ConvIm2col {
		t.kernels = kernelsRecord
	}

	x := images
	t1 := t.conv1(scope)
	if x.Rank() == 6 {
		t1.tiles = t1.conv1Tiles(x.Shape().Dimensions[2], size)
		if t1.tiles == nil || !slices.Equal(t1.tiles.dims(), x.Shape().Dimensions) {
			exceptions.Panicf("alexNet: input %s is not conv1's tiles of %dx%d images", x.Shape(), size, size)
		}
	}
	lrnGrad := t.customGrad && t.lrnGrad
	x = convLayer(scope.In("conv1"), x, 96, conv1Kernel, conv1Stride, strides[0], convImpl, poolImpl, t1)
	x = localResponseNorm(x, lrnGrad)
	x = convLayer(scope.In("conv2"), x, 256, 5, 1, strides[1], convImpl, poolImpl, t)
	x = localResponseNorm(x, lrnGrad)
	// conv3-5 keep the map's size; with t.tileChain, conv3 and conv4 hand
	// the next one their activations in the tile layout where all take
	// the same Winograd tiles.
	chain := 0
	if d := x.Shape().Dimensions; t.tileChain {
		chain = t.winogradTile(3, d[0], d[1], d[2])
	}
	c := convLayerOn(scope.In("conv3"), convOut{y: x}, 384, 3, 1, 0, convImpl, poolImpl, t, chain)
	c = convLayerOn(scope.In("conv4"), c, 384, 3, 1, 0, convImpl, poolImpl, t, chain)
	x = convLayerOn(scope.In("conv5"), c, 256, 3, 1, strides[2], convImpl, poolImpl, t, 0).y
	x = localResponseNorm(x, lrnGrad)
	if record {
		// The transformed kernels are all stored; reading the dense
		// layers' weights would only make the graph take them as inputs.
		return x
	}

	batch := x.Shape().Dimensions[0]
	x = Reshape(x, batch, x.Shape().Size()/batch)
	if features && t.hostDense {
		return x // the features: the host runs the dense layers (denseHead)
	}
	dropoutKeep := [2]float64{1, 1}
	if reg == Dropout {
		dropoutKeep = [2]float64{keep[0], keep[1]}
	}
	for i, name := range []string{"fc6", "fc7"} {
		sc := scope.In("%s", name)
		ti := t
		ti.tap = taps[name]
		x = Tanh(denseLayer(sc, x, denseUnits, reg, keep[i], training, ti))
		x = dropout(sc, x, dropoutKeep[i], training)
	}
	return denseLayer(scope.In("fc8"), x, classes, Dropout, 1, training, t)
}

// tuningOf is the go backend's formulation the store of scope asks for
// (paramTuning), for a training graph or an inference one; the zero tuning
// (the straightforward formulation) where the store uses the backends'
// built-in layers (XLA).
func tuningOf(scope *gmx.Scope, training bool) tuning {
	if gmx.GetParamOr(scope, ParamConvImpl, ConvIm2col) != ConvIm2col {
		return tuning{}
	}
	bits := gmx.GetParamOr(scope, paramTuning, tuningAll)
	t := tuning{
		customGrad:           training && bits&tuningCustomGrad != 0,
		spaceToDepth:         bits&tuningSpaceToDepth != 0,
		winograd:             bits&tuningWinograd != 0,
		winograd5:            bits&tuningWinograd5 != 0,
		dropConnectOut:       bits&tuningDropConnectOut != 0,
		winograd4:            bits&tuningWinograd4 != 0,
		tileGrad:             bits&tuningTileGrad != 0,
		spaceToDepthWinograd: bits&tuningSpaceToDepthWinograd != 0,
		lrnGrad:              bits&tuningLRNGrad != 0,
		poolFirst:            bits&tuningPoolFirst != 0,
		dropConnectBits:      bits&tuningDropConnectBits != 0,
		poolTiles:            bits&tuningPoolTiles != 0,
		poolTilesPadded:      bits&tuningPoolTilesPadded != 0,
		eyeTranspose:         bits&tuningEyeTranspose != 0,
		hostTiles:            bits&tuningHostTiles != 0,
		tileChain:            bits&tuningTileChain != 0,
		hostTransform:        bits&tuningHostTransform != 0,
		narrowPad:            bits&tuningNarrowPad != 0,
		alignedPool:          !training && bits&tuningAlignedPool != 0,
		hostUpdate:           training && bits&tuningHostUpdate != 0,
		hostDense:            !training && bits&tuningHostDense != 0,
	}
	if !training && bits&tuningServedKernels != 0 {
		t.kernels = kernelsStored
	}
	return t
}
