// Command flowerd serves the five AlexNet variants of the stride/dropout
// study over gRPC: classify, train and fine-tune online, evaluate, compare.
//
// Every flag has an environment variable beside it; the flag wins. Run
// `flowerd -h` for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	"github.com/flowerd/flowerd/service"
)

// config is every setting of the server.
type config struct {
	addr             string
	dataDir          string
	dataset          string
	split            [3]int
	backend          string
	variants         string
	maxRequestBytes  int
	maxRequestPixels int
	maxJobs          int
	batchMax         int
	loadParallelism  int
	exportDir        string
	followDir        string
	followInterval   time.Duration
	batchWait        time.Duration
	shutdownTimeout  time.Duration
	logLevel         string
	traceStdout      bool
	healthProbe      bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowerd:", err)
		os.Exit(2)
	}
	if cfg.healthProbe {
		if err := probe(cfg.addr); err != nil {
			fmt.Fprintln(os.Stderr, "flowerd: health probe:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(cfg); err != nil {
		slog.Error("flowerd stopped", "err", err)
		os.Exit(1)
	}
}

// env returns the environment variable name, or def when unset.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("flowerd", flag.ContinueOnError)
	var c config
	defaultDataset := ""
	for _, dir := range []string{"../shared/data/flowers17", "data/flowers17"} { // beside the checkout, or from make data
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			defaultDataset = dir
			break
		}
	}
	fs.StringVar(&c.addr, "addr", env("FLOWERD_ADDR", "localhost:50051"), "listen address (FLOWERD_ADDR)")
	fs.StringVar(&c.dataDir, "data-dir", env("FLOWERD_DATA_DIR", "flowerd-data"), "directory of the checkpoint store (FLOWERD_DATA_DIR)")
	fs.StringVar(&c.dataset, "dataset", env("FLOWERD_DATASET", defaultDataset),
		"Oxford 17 Flowers folder, one sub-folder per class, for Train and Evaluate (FLOWERD_DATASET; default ../shared/data/flowers17 or data/flowers17, the first present)")
	split := env("FLOWERD_SPLIT", "60,10,10")
	fs.StringVar(&split, "split", split, "images per class for train,val,test, drawn by a seeded stratified split (FLOWERD_SPLIT)")
	fs.StringVar(&c.backend, "backend", env("GOMLX_BACKEND", model.DefaultBackend),
		`compute backend: "go" (pure Go, CPU) or "xla:/abs/path/to/pjrt_plugin.so" (GOMLX_BACKEND)`)
	fs.StringVar(&c.variants, "variants", env("FLOWERD_VARIANTS", strings.Join(model.VariantNames(), ",")),
		"comma-separated variants to serve (FLOWERD_VARIANTS)")
	maxBytes, err := strconv.Atoi(env("FLOWERD_MAX_REQUEST_BYTES", strconv.Itoa(service.DefaultMaxRequestBytes)))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_MAX_REQUEST_BYTES: %w", err)
	}
	fs.IntVar(&c.maxRequestBytes, "max-request-bytes", maxBytes, "largest request accepted, in bytes (FLOWERD_MAX_REQUEST_BYTES)")
	maxPixels, err := strconv.Atoi(env("FLOWERD_MAX_REQUEST_PIXELS", strconv.Itoa(service.DefaultMaxRequestPixels)))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_MAX_REQUEST_PIXELS: %w", err)
	}
	fs.IntVar(&c.maxRequestPixels, "max-request-pixels", maxPixels,
		"most pixels the images of one Classify or feedback call may declare in all, checked before decoding (FLOWERD_MAX_REQUEST_PIXELS)")
	maxJobs, err := strconv.Atoi(env("FLOWERD_MAX_JOBS", strconv.Itoa(service.DefaultMaxConcurrentJobs)))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_MAX_JOBS: %w", err)
	}
	fs.IntVar(&c.maxJobs, "max-jobs", maxJobs, "training jobs run at once; more wait queued (FLOWERD_MAX_JOBS)")
	batchMax, err := strconv.Atoi(env("FLOWERD_BATCH_MAX", strconv.Itoa(service.DefaultMaxBatch)))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_BATCH_MAX: %w", err)
	}
	fs.IntVar(&c.batchMax, "batch-max", batchMax, "most images one forward pass takes when concurrent Classify calls are merged; 1 turns batching off (FLOWERD_BATCH_MAX)")
	loadPar, err := strconv.Atoi(env("FLOWERD_LOAD_PARALLELISM", "2"))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_LOAD_PARALLELISM: %w", err)
	}
	fs.IntVar(&c.loadParallelism, "load-parallelism", loadPar, "variants loaded at once at start-up (FLOWERD_LOAD_PARALLELISM)")
	fs.StringVar(&c.exportDir, "export-dir", env("FLOWERD_EXPORT_DIR", ""),
		"copy every newly served version here, for serving replicas that follow this trainer (FLOWERD_EXPORT_DIR)")
	fs.StringVar(&c.followDir, "follow", env("FLOWERD_FOLLOW", ""),
		"run as a read-only serving replica of the trainer exporting to this directory (FLOWERD_FOLLOW)")
	followInterval, err := time.ParseDuration(env("FLOWERD_FOLLOW_INTERVAL", service.DefaultFollowInterval.String()))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_FOLLOW_INTERVAL: %w", err)
	}
	fs.DurationVar(&c.followInterval, "follow-interval", followInterval, "how often a replica looks for a new version (FLOWERD_FOLLOW_INTERVAL)")
	batchWait, err := time.ParseDuration(env("FLOWERD_BATCH_WAIT", "0s"))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_BATCH_WAIT: %w", err)
	}
	fs.DurationVar(&c.batchWait, "batch-wait", batchWait, "how long a forward pass waits for more calls to merge; 0 takes those already waiting (FLOWERD_BATCH_WAIT)")
	timeout, err := time.ParseDuration(env("FLOWERD_SHUTDOWN_TIMEOUT", "30s"))
	if err != nil {
		return c, fmt.Errorf("FLOWERD_SHUTDOWN_TIMEOUT: %w", err)
	}
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", timeout, "how long shutdown waits for calls and jobs to stop (FLOWERD_SHUTDOWN_TIMEOUT)")
	fs.BoolVar(&c.traceStdout, "trace-stdout", os.Getenv("OTEL_TRACES_EXPORTER") == "console",
		"print spans to stdout, for debugging (OTEL_TRACES_EXPORTER=console)")
	fs.BoolVar(&c.healthProbe, "health-probe", false,
		"check the health of the server at -addr and exit 0 if it is SERVING, 1 if not (for container health checks)")
	fs.StringVar(&c.logLevel, "log-level", env("FLOWERD_LOG_LEVEL", "info"), "debug, info, warn or error (FLOWERD_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	parts := strings.Split(split, ",")
	if len(parts) != 3 {
		return c, fmt.Errorf("split %q: want three numbers, train,val,test images per class", split)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return c, fmt.Errorf("split %q: %q is not a count of images", split, p)
		}
		c.split[i] = n
	}
	return c, nil
}

// probe asks the standard health service at addr whether the server is SERVING.
func probe(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", resp.GetStatus())
	}
	return nil
}

func run(c config) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	limit, from := setMemoryLimit("/")
	log.Info("memory limit for the Go collector", "bytes", limit, "from", from)

	shutdownTelemetry, err := setupTelemetry(context.Background(), c.traceStdout)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdownTelemetry(ctx); err != nil {
			log.Warn("flush telemetry", "err", err)
		}
	}()

	backend, err := model.NewBackend(c.backend)
	if err != nil {
		return err
	}
	defer backend.Close()
	store, err := checkpoints.Open(c.dataDir, checkpoints.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open store %s: %w", c.dataDir, err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	srv, err := service.New(service.Options{
		Backend: backend, Store: store, DatasetDir: c.dataset, Variants: strings.Split(c.variants, ","),
		Dataset:         dataset.Options{TrainPerClass: c.split[0], ValPerClass: c.split[1], TestPerClass: c.split[2]},
		MaxRequestBytes: c.maxRequestBytes, MaxRequestPixels: c.maxRequestPixels, MaxConcurrentJobs: c.maxJobs, Logger: log,
		MaxBatch: c.batchMax, MaxWait: c.batchWait, LoadParallelism: c.loadParallelism,
		ExportDir: c.exportDir, FollowDir: c.followDir, FollowInterval: c.followInterval,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(c.maxRequestBytes+1<<20),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))))
	srv.Register(gs)
	reflection.Register(gs)
	srv.Start()
	log.Info("flowerd listening", "addr", lis.Addr().String(), "backend", backend.Name(), "store", c.dataDir,
		"dataset", c.dataset, "variants", c.variants)

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	// Jobs take longest to stop (up to a training step; they are recorded
	// as interrupted): cancel them first, and while they stop, drain the
	// calls in flight, Classify calls queued for a forward pass included.
	// Then stop inference and wait for the jobs, all within the timeout.
	srv.BeginShutdown()
	drained := make(chan struct{})
	go func() { gs.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		log.Warn("shutdown deadline: cancelling the calls still in flight")
		gs.Stop()
	}
	if err := srv.Close(ctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	log.Info("flowerd stopped cleanly")
	return nil
}
