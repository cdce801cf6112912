package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnknownVariant is returned when a variant name is not in the registry.
var ErrUnknownVariant = errors.New("unknown variant")

// Regularization is how a variant regularises its two 4096-wide dense layers.
type Regularization string

const (
	// Dropout zeroes units of the dense layers' outputs during training
	// (tflearn's dropout: kept units are scaled by 1/keep).
	Dropout Regularization = "dropout"
	// DropConnect zeroes weights of the dense layers during training and uses
	// the expected weights (keep × W) at inference.
	DropConnect Regularization = "dropconnect"
)

// DropoutConvention says how the numbers in Variant.DenseRates are read.
type DropoutConvention string

const (
	// KeepProbability reads a rate as the probability of keeping a unit: this
	// is tflearn's dropout(x, p) and what the study's code passed. Default.
	KeepProbability DropoutConvention = "keep"
	// DropProbability reads a rate as the probability of dropping a unit, the
	// way the study's text describes models 3 and 4 ("lesser dropouts").
	DropProbability DropoutConvention = "drop"
)

// Variant is the configuration of one AlexNet variant of the study. Everything
// that changes the network is here, so a checkpoint that records its Variant
// describes the model it holds.
type Variant struct {
	// Name is the registry key: "model1" ... "model5".
	Name string `json:"name"`
	// Description is a short human text.
	Description string `json:"description"`
	// PoolStrides are the strides of the three 3x3 max pools.
	PoolStrides [3]int `json:"pool_strides"`
	// Regularization of the two 4096-wide dense layers.
	Regularization Regularization `json:"regularization"`
	// DenseRates are the numbers passed to the regulariser of the first and
	// second dense layer, read according to Convention.
	DenseRates [2]float64 `json:"dense_rates"`
	// Convention says whether DenseRates are keep or drop probabilities.
	Convention DropoutConvention `json:"convention"`
}

// KeepProbabilities returns the probability of keeping a unit (or a weight,
// for DropConnect) in each of the two dense layers.
func (v Variant) KeepProbabilities() [2]float64 {
	if v.Convention == DropProbability {
		return [2]float64{1 - v.DenseRates[0], 1 - v.DenseRates[1]}
	}
	return v.DenseRates
}

// Validate reports whether the variant can be built.
func (v Variant) Validate() error {
	if v.Name == "" {
		return errors.New("variant has no name")
	}
	for i, s := range v.PoolStrides {
		if s < 1 || s > 3 {
			return fmt.Errorf("variant %s: pool %d stride %d: must be 1, 2 or 3", v.Name, i+1, s)
		}
	}
	switch v.Regularization {
	case Dropout, DropConnect:
	default:
		return fmt.Errorf("variant %s: regularization %q: want %q or %q", v.Name, v.Regularization, Dropout, DropConnect)
	}
	switch v.Convention {
	case KeepProbability, DropProbability:
	default:
		return fmt.Errorf("variant %s: convention %q: want %q or %q", v.Name, v.Convention, KeepProbability, DropProbability)
	}
	for i, k := range v.KeepProbabilities() {
		if !(k > 0 && k <= 1) {
			return fmt.Errorf("variant %s: dense layer %d keeps %v of its units: must be in (0, 1]", v.Name, i+1, k)
		}
	}
	return nil
}

// variants is the study's table. The rates are what the study's tflearn code
// passed to dropout(x, p), whose argument is the probability of keeping a unit.
var variants = []Variant{
	{Name: "model1", Description: "original AlexNet: pool strides 2,2,2, dropout keep 0.5, 0.5",
		PoolStrides: [3]int{2, 2, 2}, Regularization: Dropout, DenseRates: [2]float64{0.5, 0.5}, Convention: KeepProbability},
	{Name: "model2", Description: "pool strides 3,3,3, dropout keep 0.5, 0.5",
		PoolStrides: [3]int{3, 3, 3}, Regularization: Dropout, DenseRates: [2]float64{0.5, 0.5}, Convention: KeepProbability},
	{Name: "model3", Description: "pool strides 3,3,2, dropout keep 0.4, 0.3",
		PoolStrides: [3]int{3, 3, 2}, Regularization: Dropout, DenseRates: [2]float64{0.4, 0.3}, Convention: KeepProbability},
	{Name: "model4", Description: "pool strides 3,2,2, dropout keep 0.4, 0.3",
		PoolStrides: [3]int{3, 2, 2}, Regularization: Dropout, DenseRates: [2]float64{0.4, 0.3}, Convention: KeepProbability},
	{Name: "model5", Description: "pool strides 3,3,2, DropConnect keep 0.5 on both dense layers",
		PoolStrides: [3]int{3, 3, 2}, Regularization: DropConnect, DenseRates: [2]float64{0.5, 0.5}, Convention: KeepProbability},
}

// Variants returns the five variants of the study, in order.
func Variants() []Variant { return slices.Clone(variants) }

// VariantNames returns the registry's names, in order.
func VariantNames() []string {
	names := make([]string, len(variants))
	for i, v := range variants {
		names[i] = v.Name
	}
	return names
}

// LookupVariant returns the registered variant with the given name.
func LookupVariant(name string) (Variant, error) {
	for _, v := range variants {
		if v.Name == name {
			return v, nil
		}
	}
	return Variant{}, fmt.Errorf("%w %q: known variants are %s", ErrUnknownVariant, name, strings.Join(VariantNames(), ", "))
}
