package model

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend" // the pure-Go CPU backend, always compiled in
	"github.com/gomlx/gomlx/support/exceptions"
)

// DefaultBackend is the backend used when neither the caller nor the
// GOMLX_BACKEND environment variable names one: GoMLX's pure-Go CPU backend,
// which needs no plugin and downloads nothing.
const DefaultBackend = "go"

// Backend is a GoMLX compute backend shared by all the models of a process.
type Backend struct {
	b    compute.Backend
	name string // the registered name it was opened by: "go", "xla"
	spec string
}

// NewBackend opens a backend. spec is GoMLX's configuration string
// ("go", "xla:cuda", "xla:/abs/path/xla_cuda_plugin.so", ...); empty means
// $GOMLX_BACKEND, then DefaultBackend. The XLA backend is only compiled into
// cgo builds and never downloads plugins: point it at one by path.
func NewBackend(spec string) (b *Backend, err error) {
	if spec == "" {
		spec = os.Getenv(compute.ConfigEnvVar)
	}
	if spec == "" {
		spec = DefaultBackend
	}
	name, config, _ := strings.Cut(spec, ":")
	if name == "go" && !strings.Contains(config, "ops_parallel") && !strings.Contains(config, "ops_sequential") {
		// GoMLX's pure-Go executor, when a graph runs alone, executes
		// independent nodes in parallel as tasks of a bounded worker pool,
		// and its matmul then waits for more workers from that same pool: a
		// pool full of nodes each waiting in a matmul could not progress.
		// Running nodes one at a time (each matmul still using every core)
		// rules that out, and measured faster, not slower: model2 inference
		// 2.3x and training 1.1x, interleaved in one process on a loaded
		// 2-core box.
		config = strings.TrimPrefix(config+",ops_sequential", ",")
		spec = name + ":" + config
	}
	if !backendCompiledIn(name) {
		return nil, fmt.Errorf("open backend %q: %q is not compiled into this binary (available: %s)",
			spec, name, strings.Join(compute.List(), ", "))
	}
	var cb compute.Backend
	if e := exceptions.Try(func() { cb, err = compute.NewWithConfig(spec) }); e != nil {
		return nil, fmt.Errorf("open backend %q: %v", spec, e)
	}
	if err != nil {
		return nil, fmt.Errorf("open backend %q: %w", spec, err)
	}
	return &Backend{b: cb, name: name, spec: spec}, nil
}

func backendCompiledIn(name string) bool {
	for _, n := range compute.List() {
		if n == name {
			return true
		}
	}
	return false
}

// Name is the backend's registered name: "go" or "xla".
func (b *Backend) Name() string { return b.name }

// Spec is the configuration string the backend was opened with.
func (b *Backend) Spec() string { return b.spec }

// Description says what the backend runs on, for logs and APIs.
func (b *Backend) Description() string { return b.b.Description() }

// IsGo reports whether this is the pure-Go CPU backend, which wants the
// im2col convolution and the slice max pool.
func (b *Backend) IsGo() bool { return b.name == "go" }

// Close releases the backend. Models built on it must not be used after.
func (b *Backend) Close() { b.b.Finalize() }
