// Package clients is the typed Go client of flowerd's gRPC API, flowerd.v1.
//
// Its one job is calling the service well: a deadline per call kind,
// retries of idempotent calls while the server is Unavailable, OpenTelemetry
// trace propagation (the otelgrpc client stats handler), and errors that
// keep their gRPC codes, so status.Code(err) works on anything a method
// returns:
//
//	c, err := clients.Dial(ctx, "localhost:50051", clients.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	resp, err := c.ClassifyFile(ctx, "all", "sunflower.jpg")
//	if status.Code(err) == codes.NotFound { ... }
//
// Errors are wrapped with what was being done ("classify: ..."); the
// server's status stays inside, so status.Code(err) is its code, and
// errors.As(err, &s) with s an interface{ GRPCStatus() *status.Status }
// gives its own message (status.Convert(err).Message() is the whole
// wrapped text).
//
// Training is asynchronous: Train starts jobs and Watch (a Go iterator)
// follows one until it ends; Wait does both for the common case.
//
// It may import only the generated API (pb/flowerd/v1), grpc, the
// OpenTelemetry API with otelgrpc, and the standard library: never the
// server's packages.
package clients
