package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// newIdleServer builds a Server that loads no model (Start is not called):
// enough for what runs before the models, such as decoding.
func newIdleServer(t *testing.T, opts Options) *Server {
	t.Helper()
	store, err := checkpoints.Open(t.TempDir(), checkpoints.Options{})
	if err != nil {
		t.Fatalf("checkpoints.Open = %v", err)
	}
	opts.Backend, opts.Store = testBackend(t), store
	if opts.Variants == nil {
		opts.Variants = []string{"model2"}
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close = %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store.Close = %v", err)
		}
	})
	return s
}

// pngDeclaring is a PNG signature and header declaring a w x h RGB image,
// with no pixel data: a few dozen bytes that claim 4*w*h decoded.
func pngDeclaring(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// TestClassifyPixelBudget sends requests of images whose headers declare
// more pixels than the budget: each is ResourceExhausted with a message
// saying the limit and what to do, before any image is decoded.
func TestClassifyPixelBudget(t *testing.T) {
	s := newIdleServer(t, Options{Model: model.Options{ImageSize: 67}})
	// 64 images of 7000x7000: each under dataset.MaxPixels, 3.1 gigapixels
	// (12.5 GB decoded) in all, in a few kilobytes of request.
	big := pngDeclaring(7000, 7000)
	many := make([]*flowerdpb.Image, DefaultMaxImages)
	for i := range many {
		many[i] = &flowerdpb.Image{Data: big, Name: "big.png"}
	}
	for _, tc := range []struct {
		name  string
		imgs  []*flowerdpb.Image
		parts []string
	}{
		{"64 large images", many, []string{"64 images declare 3136.0 megapixels", "limit is 100.0 megapixels per request", "fewer images", "smaller", "67x67"}},
		{"3 large images", many[:3], []string{"3 images declare 147.0 megapixels"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := s.decodeImages(context.Background(), tc.imgs)
			runtime.ReadMemStats(&after)
			st := status.Convert(s.toStatus(context.Background(), "Classify", err))
			if st.Code() != codes.ResourceExhausted {
				t.Fatalf("Classify(%s) = %v; want ResourceExhausted", tc.name, st)
			}
			for _, p := range tc.parts {
				if !strings.Contains(st.Message(), p) {
					t.Errorf("Classify(%s) message %q; want it to mention %q", tc.name, st.Message(), p)
				}
			}
			// One decoded 7000x7000 image alone would be 196 MB.
			if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
				t.Errorf("Classify(%s) allocated %d bytes before refusing; want no image decoded", tc.name, got)
			}
		})
	}

	// The same budget holds for feedback.
	small := newIdleServer(t, Options{Model: model.Options{ImageSize: 67}, MaxRequestPixels: 1_000_000})
	_, err := small.SubmitFeedback(context.Background(), &flowerdpb.SubmitFeedbackRequest{
		Image: &flowerdpb.Image{Data: pngDeclaring(2000, 1000)}, Label: "tulip"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "image declares 2.0 megapixels") {
		t.Errorf("SubmitFeedback(2 megapixels, budget 1) = %v; want ResourceExhausted saying the image declares 2.0 megapixels", err)
	}
}

// TestDecodeImagesOneAtATime checks that the batch built one image at a time
// holds exactly what decoding each image alone gives, in request order, and
// that a bad image is still InvalidArgument naming it.
func TestDecodeImagesOneAtATime(t *testing.T) {
	s := newIdleServer(t, Options{Model: model.Options{ImageSize: 67}})
	imgs := []*flowerdpb.Image{{Data: flowerJPEG(t, "sunflower")}, {Data: flowerJPEG(t, "tulip")}, {Data: flowerJPEG(t, "daisy")}}
	got, err := s.decodeImages(context.Background(), imgs)
	if err != nil {
		t.Fatalf("decodeImages = %v", err)
	}
	var want []float32
	for _, img := range imgs {
		x, err := dataset.Decode(img.GetData(), 67)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, x...)
	}
	if len(got) != len(want) {
		t.Fatalf("decodeImages gave %d values; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("decodeImages[%d] = %v; decoding alone gives %v", i, got[i], want[i])
		}
	}

	bad := append(imgs[:1:1], &flowerdpb.Image{Data: []byte("not an image"), Name: "x.jpg"})
	_, err = s.decodeImages(context.Background(), bad)
	if st := status.Convert(s.toStatus(context.Background(), "Classify", err)); st.Code() != codes.InvalidArgument ||
		!strings.Contains(st.Message(), `image 1 ("x.jpg")`) {
		t.Errorf("decodeImages(a bad second image) = %v; want InvalidArgument naming image 1", st)
	}
	empty := []*flowerdpb.Image{imgs[0], {}}
	if _, err = s.decodeImages(context.Background(), empty); code(err) != codes.InvalidArgument {
		t.Errorf("decodeImages(an empty second image) = %v; want InvalidArgument", err)
	}
}

// TestClassifyLimitsOverGRPC checks a real server: normal requests are
// answered, and one over the pixel budget is ResourceExhausted.
func TestClassifyLimitsOverGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a network: skipped under -short")
	}
	h := startServer(t, t.TempDir(), []string{"model2"}, Options{Model: model.Options{ImageSize: 67}})
	defer h.stop(t)
	ctx := context.Background()
	resp, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{
		{Data: flowerJPEG(t, "sunflower"), Name: "sun.jpg"}, {Data: flowerJPEG(t, "tulip")}}})
	if err != nil {
		t.Fatalf("Classify(two flowers) = %v", err)
	}
	if len(resp.GetResults()) != 2 || resp.GetResults()[0].GetName() != "sun.jpg" || len(resp.GetResults()[1].GetPredictions()) != 1 {
		t.Errorf("Classify(two flowers) = %v; want two results with one prediction each", resp.GetResults())
	}
	many := make([]*flowerdpb.Image, DefaultMaxImages)
	for i := range many {
		many[i] = &flowerdpb.Image{Data: pngDeclaring(7000, 7000)}
	}
	_, err = h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: many})
	wantCode(t, "Classify(64 images of 49 megapixels)", err, codes.ResourceExhausted)
	// The server still answers afterwards.
	if _, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: flowerJPEG(t, "daisy")}}}); err != nil {
		t.Errorf("Classify after a refused request = %v", err)
	}
}
