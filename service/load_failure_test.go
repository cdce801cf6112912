package service

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/model"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// TestFailedVariantIsFailedPrecondition checks that calls to a variant that
// failed to load are FailedPrecondition naming it and the cause, not
// Unavailable (which clients retry).
func TestFailedVariantIsFailedPrecondition(t *testing.T) {
	s := newIdleServer(t, Options{Model: model.Options{ImageSize: 67}})
	s.variants["model2"].setStatus(flowerdpb.ModelStatus_MODEL_STATUS_FAILED, "load checkpoint: corrupt checkpoint: bad hash")
	ctx := context.Background()
	_, err := s.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: flowerJPEG(t, "tulip")}}})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("Classify(failed variant) = %v; want FailedPrecondition", st)
	}
	for _, p := range []string{"model2", "corrupt checkpoint: bad hash", "restart"} {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("Classify(failed variant) message %q; want it to mention %q", st.Message(), p)
		}
	}
	_, err = s.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Train(failed variant) = %v; want FailedPrecondition", err)
	}
	// One still loading is Unavailable: retrying helps.
	s.variants["model2"].setStatus(flowerdpb.ModelStatus_MODEL_STATUS_LOADING, "building the network")
	_, err = s.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: flowerJPEG(t, "tulip")}}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Classify(loading variant) = %v; want Unavailable", err)
	}
}
