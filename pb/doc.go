// Package pb holds flowerd's gRPC API: the proto sources (flowerd/v1) and
// the Go code generated from them, committed. `make proto` regenerates it
// with the pinned buf and plugins. It imports nothing of flowerd.
package pb
