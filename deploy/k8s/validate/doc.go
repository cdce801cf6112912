// Package validate checks the Kubernetes manifests in deploy/k8s, offline.
//
// It has tests only. They render every kustomization (base and the
// overlays) with the kustomize library, then check each object three ways:
// against the OpenAPI v3 schema of the pinned Kubernetes release (unknown
// fields, missing required fields, wrong types), by strict decoding into the
// k8s.io/api types (unknown or duplicate fields, malformed quantities), and
// against what flowerd needs (checks_test.go: one trainer replica, serving
// replicas that follow the trainer's ReadWriteMany export read-only, gRPC
// probes on the server's port, only environment variables cmd/flowerd reads,
// a grace period longer than its shutdown timeout, Services, the
// PodDisruptionBudget and autoscaler of the serving tier, the GPU overlay's
// device request with the serving tier left on CPU).
//
// It also checks deploy/docker-compose.yml (compose_test.go): YAML without
// duplicate keys, only Compose's keys, the services flowerd, jaeger and
// train-all, build contexts and Dockerfiles that exist, dependencies that
// resolve (one waited on until healthy has a HEALTHCHECK), only variables
// cmd/flowerd reads, the store and dataset mounted where the image's
// environment says, and a training job that calls an RPC of the proto with
// fields of its request. Where `docker compose` is installed, `docker
// compose config` checks the file too.
//
// The schemas come from the k8s.io/kubernetes module (api/openapi-spec/v3),
// fetched by `go mod download` from the Go module proxy and checked against
// a pinned hash: nothing but the Go module proxy is needed.
//
//	cd deploy/k8s/validate && go test ./...
//	go test ./... -args -render /tmp/k8s   # also write the rendered YAML
//
// It is its own Go module so that the server's go.mod does not carry
// kustomize and the Kubernetes API types.
package validate
