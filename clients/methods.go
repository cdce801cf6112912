package clients

import (
	"context"
	"fmt"
	"io"
	"iter"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// AllVariants names every variant the server serves, where a call takes a
// variant (so does "").
const AllVariants = "all"

// Image is one image to classify: JPEG or PNG bytes, and an optional name
// that the result echoes.
type Image struct {
	Name string
	Data []byte
}

// Classify returns the top 5 classes of each image per variant ("" or
// AllVariants for every variant), from each variant's served weights.
func (c *Client) Classify(ctx context.Context, variant string, images ...Image) (*flowerdpb.ClassifyResponse, error) {
	return c.ClassifyTopK(ctx, variant, 0, images...)
}

// ClassifyTopK is Classify with k classes per image and variant, 1 to 17;
// 0 means the server's default, 5.
func (c *Client) ClassifyTopK(ctx context.Context, variant string, k int, images ...Image) (*flowerdpb.ClassifyResponse, error) {
	req := &flowerdpb.ClassifyRequest{Variant: variant, TopK: int32(k)}
	for _, img := range images {
		req.Images = append(req.Images, &flowerdpb.Image{Data: img.Data, Name: img.Name})
	}
	return invoke(ctx, c, "classify", kindClassify, func(ctx context.Context) (*flowerdpb.ClassifyResponse, error) {
		return c.api.Classify(ctx, req)
	})
}

// ClassifyBytes classifies one JPEG or PNG image.
func (c *Client) ClassifyBytes(ctx context.Context, variant string, data []byte) (*flowerdpb.ClassifyResponse, error) {
	return c.Classify(ctx, variant, Image{Data: data})
}

// ClassifyReader classifies the one JPEG or PNG image that r holds.
func (c *Client) ClassifyReader(ctx context.Context, variant string, r io.Reader) (*flowerdpb.ClassifyResponse, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("classify: read image: %w", err)
	}
	return c.ClassifyBytes(ctx, variant, data)
}

// ClassifyFile classifies the JPEG or PNG files at paths in one request;
// each result is named by its path.
func (c *Client) ClassifyFile(ctx context.Context, variant string, paths ...string) (*flowerdpb.ClassifyResponse, error) {
	images := make([]Image, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("classify: %w", err)
		}
		images[i] = Image{Name: p, Data: data}
	}
	return c.Classify(ctx, variant, images...)
}

// Train starts a training job per variant of req (all of them for "" or
// AllVariants) and returns them queued or running; follow one with Watch
// or Wait. A variant that already trains is codes.FailedPrecondition. Train
// is never retried: a retry could start a second run.
func (c *Client) Train(ctx context.Context, req *flowerdpb.TrainRequest) ([]*flowerdpb.Job, error) {
	resp, err := invoke(ctx, c, "train", kindControl, func(ctx context.Context) (*flowerdpb.TrainResponse, error) {
		return c.api.Train(ctx, req)
	})
	return resp.GetJobs(), err
}

// Watch follows a job: the iterator yields the job's state now, an event
// per finished epoch (Epoch set), and a last event with the job ended (see
// Ended), then stops. A failure is yielded once as the error, after which
// the iterator stops; a stream that ends before the job did is
// codes.Unavailable (watch again: the first event is the job's state then).
// Breaking out of the loop closes the stream. Watch has no deadline of the
// client's own and is not retried; each range over the iterator opens a new
// stream.
func (c *Client) Watch(ctx context.Context, jobID string) iter.Seq2[*flowerdpb.WatchJobResponse, error] {
	return func(yield func(*flowerdpb.WatchJobResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.api.WatchJob(ctx, &flowerdpb.WatchJobRequest{JobId: jobID})
		if err != nil {
			yield(nil, fmt.Errorf("watch job %s: %w", jobID, err))
			return
		}
		var last flowerdpb.JobState
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				if !Ended(last) {
					yield(nil, fmt.Errorf("watch job %s: %w", jobID,
						status.Errorf(codes.Unavailable, "the stream ended while the job was %s; watch again", last)))
				}
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("watch job %s: %w", jobID, err))
				return
			}
			last = ev.GetJob().GetState()
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// Wait watches a job until it ends and returns its last state. progress,
// if not nil, sees every event as it comes. A job that failed or was
// cancelled is not an error of Wait: look at the returned job's State and
// Error.
func (c *Client) Wait(ctx context.Context, jobID string, progress func(*flowerdpb.WatchJobResponse)) (*flowerdpb.Job, error) {
	var job *flowerdpb.Job
	for ev, err := range c.Watch(ctx, jobID) {
		if err != nil {
			return job, err
		}
		job = ev.GetJob()
		if progress != nil {
			progress(ev)
		}
	}
	return job, nil
}

// Ended reports whether a job in state st has ended: completed, cancelled,
// failed or interrupted.
func Ended(st flowerdpb.JobState) bool {
	switch st {
	case flowerdpb.JobState_JOB_STATE_COMPLETED, flowerdpb.JobState_JOB_STATE_CANCELLED,
		flowerdpb.JobState_JOB_STATE_FAILED, flowerdpb.JobState_JOB_STATE_INTERRUPTED:
		return true
	}
	return false
}

// Cancel stops a queued or running job and waits (within the call's
// deadline) for it to stop; the epochs it finished stay checkpointed. A job
// that has already ended is codes.FailedPrecondition.
func (c *Client) Cancel(ctx context.Context, jobID string) (*flowerdpb.Job, error) {
	resp, err := invoke(ctx, c, "cancel job "+jobID, kindControl, func(ctx context.Context) (*flowerdpb.CancelJobResponse, error) {
		return c.api.CancelJob(ctx, &flowerdpb.CancelJobRequest{JobId: jobID})
	})
	return resp.GetJob(), err
}

// Job returns a job, live or ended.
func (c *Client) Job(ctx context.Context, jobID string) (*flowerdpb.Job, error) {
	resp, err := invoke(ctx, c, "get job "+jobID, kindInfo, func(ctx context.Context) (*flowerdpb.GetJobResponse, error) {
		return c.api.GetJob(ctx, &flowerdpb.GetJobRequest{JobId: jobID})
	})
	return resp.GetJob(), err
}

// Jobs lists the jobs of a variant, or of all for "", newest first.
func (c *Client) Jobs(ctx context.Context, variant string) ([]*flowerdpb.Job, error) {
	resp, err := invoke(ctx, c, "list jobs", kindInfo, func(ctx context.Context) (*flowerdpb.ListJobsResponse, error) {
		return c.api.ListJobs(ctx, &flowerdpb.ListJobsRequest{Variant: variant})
	})
	return resp.GetJobs(), err
}

// Evaluate measures variants on the validation or test split, at their
// served version or the one req names.
func (c *Client) Evaluate(ctx context.Context, req *flowerdpb.EvaluateRequest) ([]*flowerdpb.Evaluation, error) {
	resp, err := invoke(ctx, c, "evaluate", kindEvaluate, func(ctx context.Context) (*flowerdpb.EvaluateResponse, error) {
		return c.api.Evaluate(ctx, req)
	})
	return resp.GetEvaluations(), err
}

// History returns a variant's training runs with their per-epoch metrics,
// newest run first: req.MaxRuns of them (0 means 10), or the one run
// req.RunId names.
func (c *Client) History(ctx context.Context, req *flowerdpb.GetHistoryRequest) ([]*flowerdpb.Run, error) {
	resp, err := invoke(ctx, c, "get history", kindInfo, func(ctx context.Context) (*flowerdpb.GetHistoryResponse, error) {
		return c.api.GetHistory(ctx, req)
	})
	return resp.GetRuns(), err
}

// Compare returns what each variant costs and buys, one row per variant.
func (c *Client) Compare(ctx context.Context) ([]*flowerdpb.VariantComparison, error) {
	resp, err := invoke(ctx, c, "compare variants", kindInfo, func(ctx context.Context) (*flowerdpb.CompareVariantsResponse, error) {
		return c.api.CompareVariants(ctx, &flowerdpb.CompareVariantsRequest{})
	})
	return resp.GetRows(), err
}

// Models describes every variant the server serves, and names its compute
// backend.
func (c *Client) Models(ctx context.Context) (*flowerdpb.ListModelsResponse, error) {
	return invoke(ctx, c, "list models", kindInfo, func(ctx context.Context) (*flowerdpb.ListModelsResponse, error) {
		return c.api.ListModels(ctx, &flowerdpb.ListModelsRequest{})
	})
}

// Model describes one variant.
func (c *Client) Model(ctx context.Context, variant string) (*flowerdpb.Model, error) {
	resp, err := invoke(ctx, c, "get model "+variant, kindInfo, func(ctx context.Context) (*flowerdpb.GetModelResponse, error) {
		return c.api.GetModel(ctx, &flowerdpb.GetModelRequest{Variant: variant})
	})
	return resp.GetModel(), err
}

// SetServingVersion pins the checkpoint version a variant serves (roll back
// or forward) and returns the variant as it is now. A variant that trains
// is codes.FailedPrecondition; an unknown version codes.NotFound.
func (c *Client) SetServingVersion(ctx context.Context, variant string, version int64) (*flowerdpb.Model, error) {
	return c.setServing(ctx, "pin "+variant, &flowerdpb.SetServingVersionRequest{Variant: variant, Version: version})
}

// Unpin makes a variant serve its latest version again.
func (c *Client) Unpin(ctx context.Context, variant string) (*flowerdpb.Model, error) {
	return c.setServing(ctx, "unpin "+variant, &flowerdpb.SetServingVersionRequest{Variant: variant, Unpin: true})
}

func (c *Client) setServing(ctx context.Context, op string, req *flowerdpb.SetServingVersionRequest) (*flowerdpb.Model, error) {
	resp, err := invoke(ctx, c, op, kindControl, func(ctx context.Context) (*flowerdpb.SetServingVersionResponse, error) {
		return c.api.SetServingVersion(ctx, req)
	})
	return resp.GetModel(), err
}

// SubmitFeedback stores a labelled JPEG or PNG image for fine-tuning (train
// with use_feedback). label is one of the 17 class names. It is not
// retried: a retry could store the image twice.
func (c *Client) SubmitFeedback(ctx context.Context, image []byte, label string) (*flowerdpb.SubmitFeedbackResponse, error) {
	req := &flowerdpb.SubmitFeedbackRequest{Image: &flowerdpb.Image{Data: image}, Label: label}
	return invoke(ctx, c, "submit feedback", kindUpload, func(ctx context.Context) (*flowerdpb.SubmitFeedbackResponse, error) {
		return c.api.SubmitFeedback(ctx, req)
	})
}
