// Package servicetest runs a real flowerd server over bufconn for the tests
// of packages built on the API (clients, flowerctl). It imports service,
// model, checkpoints and grpc; only tests import it.
package servicetest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	"github.com/flowerd/flowerd/model/dataset/datasettest"
	"github.com/flowerd/flowerd/service"
)

// Target is the address to dial with DialOption.
const Target = "passthrough:///flowerd"

// Server is a running test server.
type Server struct {
	Service *service.Server
	Store   *checkpoints.Store
	lis     *bufconn.Listener
}

// Start starts a server and stops it when the test ends. Unset options get
// test defaults: the go backend, a store in t.TempDir(), the real dataset
// (the test skips without it), a silent logger. Variants load in the
// background, as in the binary: calls are Unavailable until then.
func Start(t testing.TB, opts service.Options) *Server {
	t.Helper()
	if opts.DatasetDir == "" {
		opts.DatasetDir = datasettest.Dir(t)
	}
	if opts.Backend == nil {
		b, err := model.NewBackend("go")
		if err != nil {
			t.Fatalf("NewBackend = %v", err)
		}
		opts.Backend = b
	}
	s := &Server{lis: bufconn.Listen(1 << 20)}
	if opts.Store == nil {
		store, err := checkpoints.Open(t.TempDir(), checkpoints.Options{})
		if err != nil {
			t.Fatalf("checkpoints.Open = %v", err)
		}
		opts.Store = store
		s.Store = store
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := service.New(opts)
	if err != nil {
		t.Fatalf("service.New = %v", err)
	}
	s.Service = srv
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	srv.Register(gs)
	go gs.Serve(s.lis)
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("server Close = %v", err)
		}
		gs.Stop()
		if s.Store != nil {
			if err := s.Store.Close(); err != nil {
				t.Errorf("store Close = %v", err)
			}
		}
	})
	return s
}

// SmallOptions is a server that loads and trains in seconds: model2 only, at
// 67x67 pixels, one image per class in each split. The tests of the packages
// built on the API use it.
func SmallOptions() service.Options {
	return service.Options{
		Variants: []string{"model2"},
		Model:    model.Options{ImageSize: 67},
		Dataset:  dataset.Options{TrainPerClass: 1, ValPerClass: 1, TestPerClass: 1, Seed: 3},
	}
}

// DialOption reaches the server through its in-memory listener.
func (s *Server) DialOption() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) })
}
