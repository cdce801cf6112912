// Package service is flowerd's gRPC adapter: it validates requests, runs
// training jobs on a server-owned context, publishes checkpointed weights
// for serving, and maps every error to a gRPC status in one table
// (errors.go).
//
// It imports pb (the generated API), model (the networks), model/dataset
// and checkpoints (the store), and grpc. It does not import GoMLX or Badger.
package service
