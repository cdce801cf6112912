package service

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// Classify answers from each asked variant's published weights: a variant
// that trains keeps answering from its last published version.
func (s *Server) Classify(ctx context.Context, req *flowerdpb.ClassifyRequest) (*flowerdpb.ClassifyResponse, error) {
	resp, err := s.classify(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "Classify", err)
	}
	return resp, nil
}

func (s *Server) classify(ctx context.Context, req *flowerdpb.ClassifyRequest) (*flowerdpb.ClassifyResponse, error) {
	classes := s.classes()
	k := int(req.GetTopK())
	if k == 0 {
		k = DefaultTopK
	}
	if k < 1 || k > len(classes) {
		return nil, fmt.Errorf("%w: top_k %d: want 1 to %d (0 means %d)", errInvalid, req.GetTopK(), len(classes), DefaultTopK)
	}
	vs, err := s.lookup(req.GetVariant())
	if err != nil {
		return nil, err
	}
	images, err := s.decodeImages(ctx, req.GetImages())
	if err != nil {
		return nil, err
	}
	n := len(req.GetImages())
	resp := &flowerdpb.ClassifyResponse{Results: make([]*flowerdpb.ImageResult, n)}
	for i, img := range req.GetImages() {
		resp.Results[i] = &flowerdpb.ImageResult{Name: img.GetName()}
	}
	for _, v := range vs {
		if _, err := s.ready(v); err != nil {
			return nil, err
		}
		v.mu.Lock()
		b := v.batcher
		v.mu.Unlock()
		fctx, span := s.tel.tracer.Start(ctx, "forward", trace.WithAttributes(AttrVariant.String(v.cfg.Name),
			AttrBackend.String(s.backend.Name())))
		start := time.Now()
		r, err := b.predict(fctx, images, n)
		took := time.Since(start)
		if err == nil {
			span.SetAttributes(AttrVersion.Int64(r.version), AttrBatchSize.Int(r.batch))
		}
		if err != nil && ctx.Err() == nil && s.serveCtx.Err() != nil {
			// Close cut the pass short: the server's doing, not the caller's.
			err = fmt.Errorf("%w: %w", errShuttingDown, err)
		}
		endSpan(span, err)
		if err != nil {
			return nil, fmt.Errorf("classify with %s: %w", v.cfg.Name, err)
		}
		// The latency a caller sees: queueing for a pass plus the pass.
		s.recordClassify(ctx, v, took)
		for i, p := range r.probs {
			resp.Results[i].Predictions = append(resp.Results[i].Predictions, &flowerdpb.Prediction{
				Variant: v.cfg.Name, Version: r.version, Top: topK(p, classes, k),
				LatencyMs: float64(took) / float64(time.Millisecond),
			})
		}
	}
	return resp, nil
}

// decodeImages checks the request's limits and turns its images into one
// NHWC batch. It reads every image's header first, so that a request whose
// images declare more than MaxRequestPixels in all is refused before any
// pixel is decoded; then it decodes and resizes one image at a time, keeping
// only the small resized result of each, so that a request holds at most one
// decoded image in memory. A bad image is InvalidArgument naming it.
func (s *Server) decodeImages(ctx context.Context, imgs []*flowerdpb.Image) ([]float32, error) {
	if len(imgs) == 0 {
		return nil, fmt.Errorf("%w: no images: send at least one JPEG or PNG in images", errInvalid)
	}
	if len(imgs) > s.opts.MaxImages {
		return nil, fmt.Errorf("%w: %d images in one request; the limit is %d", errTooLarge, len(imgs), s.opts.MaxImages)
	}
	total := 0
	for _, img := range imgs {
		total += len(img.GetData())
	}
	if total > s.opts.MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes of images; the limit is %d", errTooLarge, total, s.opts.MaxRequestBytes)
	}
	dctx, span := s.tel.tracer.Start(ctx, "decode", trace.WithAttributes(AttrImages.Int(len(imgs))))
	pix, err := s.decodeEach(dctx, imgs)
	endSpan(span, err)
	if err != nil {
		return nil, err
	}
	_, span = s.tel.tracer.Start(ctx, "preprocess", trace.WithAttributes(AttrImages.Int(len(imgs))))
	defer span.End()
	size := s.modelImageSize()
	batch := make([]float32, 0, len(imgs)*size*size*3)
	for _, p := range pix {
		batch = dataset.AppendScaled(batch, p)
	}
	return batch, nil
}

// decodeEach checks the images' headers against the pixel budget, then
// decodes each to the model's input size in RGB bytes, one at a time.
func (s *Server) decodeEach(ctx context.Context, imgs []*flowerdpb.Image) ([][]uint8, error) {
	if err := s.checkPixels(imgs); err != nil {
		return nil, err
	}
	size := s.modelImageSize()
	out := make([][]uint8, len(imgs))
	for i, img := range imgs {
		var err error
		if out[i], err = s.decodeOne(ctx, img.GetData(), size); err != nil {
			return nil, fmt.Errorf("image %d%s: %w", i, nameSuffix(img.GetName()), err)
		}
	}
	return out, nil
}

// checkPixels reads the headers of imgs, without decoding them, and refuses
// a request whose images declare more than MaxRequestPixels in all.
func (s *Server) checkPixels(imgs []*flowerdpb.Image) error {
	var pixels int64
	for i, img := range imgs {
		if len(img.GetData()) == 0 {
			return fmt.Errorf("image %d%s: %w: empty image data", i, nameSuffix(img.GetName()), errInvalid)
		}
		cfg, err := dataset.DecodeConfig(img.GetData())
		if err != nil {
			return fmt.Errorf("image %d%s: %w", i, nameSuffix(img.GetName()), err)
		}
		pixels += int64(cfg.Width) * int64(cfg.Height)
	}
	return s.checkBudget(pixels, len(imgs))
}

// checkBudget refuses n images of pixels pixels in all when that is more
// than MaxRequestPixels, saying how to stay under it.
func (s *Server) checkBudget(pixels int64, n int) error {
	limit := int64(s.opts.MaxRequestPixels)
	if pixels <= limit {
		return nil
	}
	what := fmt.Sprintf("the %d images declare %.1f megapixels in all", n, float64(pixels)/1e6)
	if n == 1 {
		what = fmt.Sprintf("the image declares %.1f megapixels", float64(pixels)/1e6)
	}
	size := s.modelImageSize()
	return fmt.Errorf("%w: %s; the limit is %.1f megapixels per request: send fewer images per call, "+
		"or smaller ones (the models see %dx%d pixels, so resizing to about that first loses nothing)",
		errTooLarge, what, float64(limit)/1e6, size, size)
}

// decodeOne decodes one image and resizes it to size x size RGB bytes. At
// most decodeSlots images are decoded at once across the server, which
// bounds the memory of full-size decoded images however many calls arrive.
func (s *Server) decodeOne(ctx context.Context, data []byte, size int) ([]uint8, error) {
	select {
	case s.decodeSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.decodeSlots }()
	return dataset.DecodeRGB(data, size)
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", name)
}

// topK returns the k most probable classes, most probable first.
func topK(p []float32, classes []string, k int) []*flowerdpb.ClassScore {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return 0
	})
	out := make([]*flowerdpb.ClassScore, k)
	for i, c := range idx[:k] {
		out[i] = &flowerdpb.ClassScore{Label: classes[c], ClassIndex: int32(c), Probability: p[c]}
	}
	return out
}

// SubmitFeedback stores a labelled image for fine-tuning.
func (s *Server) SubmitFeedback(ctx context.Context, req *flowerdpb.SubmitFeedbackRequest) (*flowerdpb.SubmitFeedbackResponse, error) {
	resp, err := s.submitFeedback(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "SubmitFeedback", err)
	}
	return resp, nil
}

func (s *Server) submitFeedback(ctx context.Context, req *flowerdpb.SubmitFeedbackRequest) (*flowerdpb.SubmitFeedbackResponse, error) {
	if err := s.readOnly("send feedback"); err != nil {
		return nil, err
	}
	classes := s.classes()
	label := slices.Index(classes, req.GetLabel())
	if label < 0 {
		return nil, fmt.Errorf("%w: label %q: want one of %q", errInvalid, req.GetLabel(), classes)
	}
	data := req.GetImage().GetData()
	if len(data) > s.opts.MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes of image; the limit is %d", errTooLarge, len(data), s.opts.MaxRequestBytes)
	}
	// Decoded once, to refuse a bad image now rather than in a training
	// job, after the header passes the same limits as Classify's.
	name := nameSuffix(req.GetImage().GetName())
	if len(data) == 0 {
		return nil, fmt.Errorf("image%s: %w: empty image data", name, errInvalid)
	}
	cfg, err := dataset.DecodeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("image%s: %w", name, err)
	}
	if err := s.checkBudget(int64(cfg.Width)*int64(cfg.Height), 1); err != nil {
		return nil, err
	}
	if _, err := s.decodeOne(ctx, data, s.modelImageSize()); err != nil {
		return nil, fmt.Errorf("image%s: %w", name, err)
	}
	f, err := s.store.AddFeedback(checkpoints.Feedback{Label: label, Image: data})
	if err != nil {
		return nil, fmt.Errorf("store feedback: %w", err)
	}
	count, _, err := s.store.FeedbackUsage()
	if err != nil {
		return nil, err
	}
	return &flowerdpb.SubmitFeedbackResponse{Id: fmt.Sprint(f.ID), Stored: int32(count)}, nil
}

// feedbackExtras reads every stored feedback image as training examples.
func (s *Server) feedbackExtras() ([]dataset.Extra, error) {
	var extras []dataset.Extra
	var after uint64
	for {
		page, err := s.store.ListFeedback(after, 256)
		if err != nil {
			return nil, err
		}
		for _, f := range page {
			extras = append(extras, dataset.Extra{Name: fmt.Sprintf("feedback %d", f.ID), Data: f.Image, Label: f.Label})
			after = f.ID
		}
		if len(page) < 256 {
			return extras, nil
		}
	}
}

// Evaluate measures variants on a split, at the served or a given version.
func (s *Server) Evaluate(ctx context.Context, req *flowerdpb.EvaluateRequest) (*flowerdpb.EvaluateResponse, error) {
	resp, err := s.evaluate(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "Evaluate", err)
	}
	return resp, nil
}

func (s *Server) evaluate(ctx context.Context, req *flowerdpb.EvaluateRequest) (*flowerdpb.EvaluateResponse, error) {
	split := dataset.Val
	switch req.GetSplit() {
	case flowerdpb.Split_SPLIT_UNSPECIFIED, flowerdpb.Split_SPLIT_VAL:
	case flowerdpb.Split_SPLIT_TEST:
		split = dataset.Test
	default:
		return nil, fmt.Errorf("%w: split %v", errInvalid, req.GetSplit())
	}
	if req.GetVersion() < 0 {
		return nil, fmt.Errorf("%w: version %d", errInvalid, req.GetVersion())
	}
	vs, err := s.lookup(req.GetVariant())
	if err != nil {
		return nil, err
	}
	if req.GetVersion() > 0 && len(vs) != 1 {
		return nil, fmt.Errorf("%w: a version needs one variant", errInvalid)
	}
	if err := s.checkDatasetDir(req.GetDatasetDir()); err != nil {
		return nil, err
	}
	ds, err := s.dataset(ctx, req.GetDatasetDir())
	if err != nil {
		return nil, err
	}
	if ds.Len(split) == 0 {
		return nil, fmt.Errorf("%w: the %s split of the dataset is empty", errNoDataset, split)
	}
	resp := &flowerdpb.EvaluateResponse{}
	for _, v := range vs {
		m, err := s.ready(v)
		if err != nil {
			return nil, err
		}
		if want := req.GetVersion(); want > 0 && want != m.Served().Version() {
			if err := s.readOnly("evaluate other versions"); err != nil {
				return nil, err
			}
			// Another version: build a throwaway model for it.
			if m, err = s.modelAtVersion(v, uint64(want)); err != nil {
				return nil, err
			}
		}
		ectx, span := s.tel.tracer.Start(ctx, "evaluate", trace.WithAttributes(AttrVariant.String(v.cfg.Name),
			AttrSplit.String(split.String()), AttrBackend.String(s.backend.Name())))
		ev, err := m.Evaluate(ectx, ds, split, 32)
		if err == nil {
			span.SetAttributes(AttrVersion.Int64(ev.Version), AttrImages.Int(ev.Examples), AttrImagesPerSec.Float64(ev.ImagesPerSec))
		}
		endSpan(span, err)
		if err != nil {
			return nil, fmt.Errorf("evaluate %s: %w", v.cfg.Name, err)
		}
		// Recorded, so CompareVariants can report it after a restart too.
		if err := s.store.AddEvaluation(checkpoints.Evaluation{Variant: v.cfg.Name, Version: uint64(ev.Version),
			Split: split.String(), Examples: ev.Examples, Loss: ev.Loss, Top1: ev.Top1, Top5: ev.Top5}); err != nil {
			return nil, fmt.Errorf("record evaluation: %w", err)
		}
		resp.Evaluations = append(resp.Evaluations, evaluationToPB(v.cfg.Name, req.GetSplit(), ev, m.Classes()))
	}
	return resp, nil
}

func (s *Server) modelAtVersion(v *variant, version uint64) (*model.Model, error) {
	if _, err := s.store.Manifest(v.cfg.Name, version); err != nil {
		return nil, fmt.Errorf("%s version %d: %w", v.cfg.Name, version, err)
	}
	m, err := model.New(s.backend, v.cfg, s.opts.Model)
	if err != nil {
		return nil, err
	}
	if err := s.loadVersion(v.cfg.Name, version, m); err != nil {
		return nil, err
	}
	return m, nil
}

func evaluationToPB(name string, split flowerdpb.Split, ev *model.Evaluation, classes []string) *flowerdpb.Evaluation {
	if split == flowerdpb.Split_SPLIT_UNSPECIFIED {
		split = flowerdpb.Split_SPLIT_VAL
	}
	out := &flowerdpb.Evaluation{
		Variant: name, Version: ev.Version, Split: split, Examples: int32(ev.Examples),
		Loss: ev.Loss, Top1: ev.Top1, Top5: ev.Top5, ImagesPerSec: ev.ImagesPerSec,
	}
	for c, row := range ev.Confusion {
		counts := make([]int32, len(row))
		total := 0
		for j, n := range row {
			counts[j] = int32(n)
			total += n
		}
		out.Confusion = append(out.Confusion, &flowerdpb.ConfusionRow{Label: classes[c], Predicted: counts})
		acc := ev.PerClass[c]
		if total == 0 {
			acc = 0
		}
		out.PerClass = append(out.PerClass, &flowerdpb.ClassAccuracy{Label: classes[c], Examples: int32(total), Accuracy: acc})
	}
	return out
}
