// Package checkpoints is flowerd's durable state: an embedded Badger store
// that holds model checkpoints (chunked, checksummed training state), the
// serving pointer of each variant, per-epoch metric histories and run
// records, job records and client feedback examples.
//
// It is the only package of flowerd that imports Badger
// (github.com/dgraph-io/badger/v4). It imports nothing else of flowerd and
// neither GoMLX nor gRPC: training state crosses its boundary as an opaque
// byte stream (io.Reader / io.Writer), so the model package decides what the
// bytes mean.
//
// A checkpoint version is stored as chunks of a few MiB, each with its own
// SHA-256, and a manifest that is written last, after a sync: a version
// exists only once every chunk is durable. Reading verifies every chunk and
// the whole stream; a mismatch is reported as ErrCorrupt, and Load falls
// back to the previous version by itself.
//
// Errors wrap the exported sentinels (ErrNotFound, ErrCorrupt, ErrLocked,
// ...), so callers test them with errors.Is.
package checkpoints
