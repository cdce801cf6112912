// Package model holds the five AlexNet variants of the stride/dropout study as
// GoMLX graphs, and the engine that trains, evaluates and runs them.
//
// It is the only package of flowerd that imports GoMLX. It knows nothing of
// gRPC or of the store: training state crosses its boundary as bytes
// (WriteState / ReadState), metrics through callbacks.
package model
