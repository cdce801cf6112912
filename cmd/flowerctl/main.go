// Command flowerctl is the command-line client of flowerd: classify images,
// train and watch, list jobs and models, evaluate, show and plot the
// training history (the study's Figure 2), compare the variants,
// pin a served version, send feedback, and run the whole study (train
// every variant, evaluate it on the test split, write the report).
//
//	flowerctl [-addr host:port] [-timeout d] [-json] COMMAND [flags] [args]
//
// Run `flowerctl -h` for the commands, `flowerctl COMMAND -h` for their
// flags. The global flags may also follow the command. A failed call prints
// its gRPC code and message and exits 1; a usage error exits 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/clients"
)

// DefaultAddr is the server flowerctl calls unless -addr or FLOWERD_ADDR
// say otherwise.
const DefaultAddr = "localhost:50051"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr, tty: isTerminal(os.Stdout), getenv: os.Getenv}
	code := a.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device, as a terminal is.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// app is one invocation's surroundings, injectable by tests.
type app struct {
	stdout, stderr io.Writer
	tty            bool // stdout is a terminal: progress redraws in place
	getenv         func(string) string
	// client are the client options every command dials with (tests add a
	// bufconn dialer); -timeout overrides its timeouts.
	client clients.Options
}

// globals are the flags every command takes.
type globals struct {
	addr    string
	timeout time.Duration
	json    bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "flowerd address, host:port (FLOWERD_ADDR)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of connecting and of each call; 0: the client's defaults per call kind (connect 10s, classify 30s, evaluate 10m, train/cancel 2m, others 10s)")
	fs.BoolVar(&g.json, "json", g.json, "print the raw responses as protojson")
}

// usageError is a command line that cannot run: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// env is what a command runs with.
type env struct {
	c    *clients.Client
	out  io.Writer
	json bool
	tty  bool
}

// runner is a parsed command, ready to run.
type runner interface {
	run(ctx context.Context, e *env) error
}

// command describes a subcommand: parse registers its flags on fs and
// returns a finish function that checks the positional arguments after
// parsing and returns the runner.
type command struct {
	name, synopsis, help string
	parse                func(fs *flag.FlagSet) func(args []string) (runner, error)
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: flowerctl [-addr host:port] [-timeout d] [-json] COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands {
		short, _, _ := strings.Cut(c.help, "\n") // a long help's first line sums it up
		fmt.Fprintf(w, "  %-17s %s\n", c.synopsis, short)
	}
	fmt.Fprint(w, `
Global flags (before or after the command):
  -addr host:port    flowerd address (FLOWERD_ADDR, default `+DefaultAddr+`)
  -timeout d         deadline of connecting and of each call (default: per call kind)
  -json              print the raw responses as protojson
`)
}

// parse reads the command line into the global flags and a runner.
func (a *app) parse(args []string) (globals, runner, error) {
	g := globals{addr: DefaultAddr}
	if v := a.getenv("FLOWERD_ADDR"); v != "" {
		g.addr = v
	}
	fs := flag.NewFlagSet("flowerctl", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { a.usage(a.stderr) }
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return g, nil, err
	}
	if fs.NArg() == 0 {
		a.usage(a.stderr)
		return g, nil, usagef("no command")
	}
	name := fs.Arg(0)
	if n, ok := aliases[name]; ok {
		name = n
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		return g, nil, usagef("unknown command %q (flowerctl -h lists them)", name)
	}
	cfs := flag.NewFlagSet("flowerctl "+name, flag.ContinueOnError)
	cfs.SetOutput(a.stderr)
	g.register(cfs)
	finish := cmd.parse(cfs)
	cfs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: flowerctl %s\n\n%s\n\nFlags:\n", cmd.synopsis, cmd.help)
		cfs.PrintDefaults()
	}
	if err := cfs.Parse(fs.Args()[1:]); err != nil {
		return g, nil, err
	}
	r, err := finish(cfs.Args())
	if err != nil {
		return g, nil, err
	}
	if g.timeout < 0 {
		return g, nil, usagef("-timeout %v: want a positive duration or 0", g.timeout)
	}
	return g, r, nil
}

// main runs one command line and returns the exit status.
func (a *app) main(ctx context.Context, args []string) int {
	g, r, err := a.parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(a.stderr, "flowerctl:", err)
		} // flag errors were printed by the flag package
		return 2
	}
	opts := a.client
	if g.timeout > 0 {
		opts.Timeouts = clients.Timeouts{Classify: g.timeout, Evaluate: g.timeout, Control: g.timeout, Info: g.timeout}
		opts.ConnectTimeout = g.timeout
	}
	c, err := clients.Dial(ctx, g.addr, opts)
	if err != nil {
		fmt.Fprintln(a.stderr, "flowerctl:", formatError(err))
		return 1
	}
	defer c.Close()
	if err := r.run(ctx, &env{c: c, out: a.stdout, json: g.json, tty: a.tty}); err != nil {
		fmt.Fprintln(a.stderr, "flowerctl:", formatError(err))
		return 1
	}
	return 0
}

// formatError writes a client error as "what: Code: server's message".
func formatError(err error) string {
	var se interface {
		error
		GRPCStatus() *status.Status
	}
	if !errors.As(err, &se) {
		return err.Error()
	}
	st := se.GRPCStatus()
	prefix := strings.TrimSuffix(err.Error(), se.Error())
	return fmt.Sprintf("%s%s: %s", prefix, st.Code(), st.Message())
}
