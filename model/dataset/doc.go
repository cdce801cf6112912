// Package dataset loads a folder-per-class image dataset (Oxford 17 Flowers
// for flowerd) and feeds it to the training engine: a seeded stratified
// train/validation/test split, images decoded and resized once and kept in
// memory as bytes, and fixed-size batches of float32 pixels, shuffled and
// optionally augmented, prepared by a prefetching goroutine. Decode applies
// the same preprocessing to a single image for inference.
//
// It imports the standard library only (golang.org/x/image would be allowed;
// the resize filter is written here instead, see resizeRGB). It does not
// import GoMLX, gRPC or Badger: model/ turns batches into tensors, service/
// maps the exported errors to status codes.
package dataset
