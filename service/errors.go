package service

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
)

// The service's own failure kinds; toStatus maps them with the others.
var (
	errInvalid      = errors.New("invalid argument")
	errNotFound     = errors.New("not found")
	errJobRunning   = errors.New("a job is running")
	errNotReady     = errors.New("not ready")
	errLoadFailed   = errors.New("failed to load")
	errTooLarge     = errors.New("too large")
	errNoDataset    = errors.New("no dataset")
	errShuttingDown = errors.New("server is shutting down")
)

// codeTable maps every sentinel error a request can meet to its gRPC code.
// It is the one place where errors of model, checkpoints and the dataset
// loader become statuses.
var codeTable = []struct {
	err  error
	code codes.Code
}{
	{errInvalid, codes.InvalidArgument},
	{errNotFound, codes.NotFound},
	{errJobRunning, codes.FailedPrecondition},
	{errNotReady, codes.Unavailable},
	{errLoadFailed, codes.FailedPrecondition}, // retrying does not help
	{errTooLarge, codes.ResourceExhausted},
	{errNoDataset, codes.FailedPrecondition},
	{errShuttingDown, codes.Unavailable},
	{errReadOnly, codes.FailedPrecondition},

	{model.ErrUnknownVariant, codes.NotFound},
	{model.ErrInvalidInput, codes.InvalidArgument},
	{model.ErrBusy, codes.FailedPrecondition},
	{model.ErrStateMismatch, codes.FailedPrecondition},
	{model.ErrBadState, codes.DataLoss},

	{checkpoints.ErrNotFound, codes.NotFound},
	{checkpoints.ErrCorrupt, codes.DataLoss},
	{checkpoints.ErrInvalid, codes.InvalidArgument},
	{checkpoints.ErrFull, codes.ResourceExhausted},
	{checkpoints.ErrPinned, codes.FailedPrecondition},
	{checkpoints.ErrJobFinished, codes.FailedPrecondition},
	{checkpoints.ErrClosed, codes.Unavailable},

	{dataset.ErrUnsupportedFormat, codes.InvalidArgument},
	{dataset.ErrCorruptImage, codes.InvalidArgument},
	{dataset.ErrImageTooLarge, codes.InvalidArgument},
	{dataset.ErrInvalidOptions, codes.InvalidArgument},
	{dataset.ErrNoDir, codes.FailedPrecondition},
	{dataset.ErrNoClasses, codes.FailedPrecondition},
	{dataset.ErrEmptyClass, codes.FailedPrecondition},
	{dataset.ErrTooFewImages, codes.FailedPrecondition},
	{dataset.ErrUnknownClass, codes.FailedPrecondition},
	{dataset.ErrUnreadable, codes.FailedPrecondition},

	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// code returns the gRPC code of err, codes.Unknown if none applies.
func code(err error) codes.Code {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code()
	}
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Unknown
}

// toStatus turns an error into the status a client sees: the mapped code
// with the error's message, or Internal with a generic message (the detail
// goes to the log).
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	c := code(err)
	if c == codes.Unknown {
		s.log.ErrorContext(ctx, "internal error", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Internal, method+": internal error; the server log has the details")
	}
	return status.Error(c, err.Error())
}
