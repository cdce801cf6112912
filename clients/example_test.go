package clients_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// The examples talk to an in-process stand-in for flowerd on a loopback
// port; against a real server, dial its address ("localhost:50051").

func ExampleDial() {
	addr, stop := serveFakeTCP(&fake{})
	defer stop()

	ctx := context.Background()
	c, err := clients.Dial(ctx, addr, clients.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	models, err := c.Models(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range models.GetModels() {
		fmt.Printf("%s: %d parameters, serving version %d\n", m.GetName(), m.GetParameters(), m.GetServedVersion())
	}
	// Output:
	// model2: 30039441 parameters, serving version 3
}

func ExampleClient_ClassifyTopK() {
	addr, stop := serveFakeTCP(&fake{})
	defer stop()
	ctx := context.Background()
	c, err := clients.Dial(ctx, addr, clients.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jpeg := []byte("...JPEG bytes...") // os.ReadFile("sunflower.jpg"), or use ClassifyFile
	resp, err := c.ClassifyTopK(ctx, clients.AllVariants, 2, clients.Image{Name: "sunflower.jpg", Data: jpeg})
	if err != nil {
		log.Fatal(err)
	}
	for _, img := range resp.GetResults() {
		for _, p := range img.GetPredictions() {
			fmt.Printf("%s %s v%d:", img.GetName(), p.GetVariant(), p.GetVersion())
			for _, s := range p.GetTop() {
				fmt.Printf(" %s %.2f", s.GetLabel(), s.GetProbability())
			}
			fmt.Println()
		}
	}
	// Output:
	// sunflower.jpg model1 v3: sunflower 0.75 daffodil 0.19
	// sunflower.jpg model2 v4: sunflower 0.75 daffodil 0.19
}

// Train starts a job and returns at once; Watch follows it epoch by epoch
// until it ends.
func ExampleClient_Watch() {
	addr, stop := serveFakeTCP(&fake{})
	defer stop()
	ctx := context.Background()
	c, err := clients.Dial(ctx, addr, clients.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs, err := c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 3})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range c.Watch(ctx, jobs[0].GetId()) {
		if err != nil {
			log.Fatal(err)
		}
		if e := ev.GetEpoch(); e != nil {
			fmt.Printf("epoch %d: loss %.2f, val accuracy %.2f, version %d\n", e.GetEpoch(), e.GetLoss(), e.GetValAccuracy(), e.GetVersion())
		}
		if clients.Ended(ev.GetJob().GetState()) {
			fmt.Println(ev.GetJob().GetState())
		}
	}
	// Output:
	// epoch 1: loss 2.50, val accuracy 0.08, version 1
	// epoch 2: loss 2.20, val accuracy 0.16, version 2
	// epoch 3: loss 1.90, val accuracy 0.24, version 3
	// JOB_STATE_COMPLETED
}

// Wait is Watch for callers that only need the outcome.
func ExampleClient_Wait() {
	addr, stop := serveFakeTCP(&fake{})
	defer stop()
	ctx := context.Background()
	c, err := clients.Dial(ctx, addr, clients.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs, err := c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 3})
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.Wait(ctx, jobs[0].GetId(), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.GetState(), job.GetEpochsDone(), "epochs")
	// Output:
	// JOB_STATE_COMPLETED 3 epochs
}

// Errors keep their gRPC codes through the client's wrapping.
func ExampleClient_Train_errors() {
	addr, stop := serveFakeTCP(&fake{})
	defer stop()
	ctx := context.Background()
	c, err := clients.Dial(ctx, addr, clients.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2"}) // no epochs
	switch status.Code(err) {
	case codes.InvalidArgument:
		fmt.Println("bad request:", status.Code(err))
	case codes.FailedPrecondition:
		fmt.Println("model2 is already training")
	}
	// Output:
	// bad request: InvalidArgument
}

// Deadlines per call kind, and retries of idempotent calls while the
// server is Unavailable (a variant still loading, a restart).
func ExampleOptions() {
	opts := clients.Options{
		Timeouts: clients.Timeouts{Classify: 5 * time.Second, Evaluate: -1}, // -1: only the caller's deadline
		Retry:    clients.Retry{MaxAttempts: 6, InitialBackoff: 500 * time.Millisecond},
		// TLS: &tls.Config{...} for a server behind TLS.
	}
	_ = opts
	// Output:
}
