package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // registers GIF with image.Decode
	_ "image/jpeg" // registers JPEG with image.Decode
	_ "image/png"  // registers PNG with image.Decode
	"slices"
	"strings"
)

// Image limits.
const (
	// MaxPixels is the largest image, in pixels by its header, that is
	// decoded; larger ones are refused before any pixel is decoded.
	MaxPixels = 50_000_000
	// MaxSide is the longest side, in pixels, of an image that is decoded
	// (JPEG's own limit).
	MaxSide = 65535
	// MinImageSize and MaxImageSize bound the side of the square images
	// produced by Load and Decode.
	MinImageSize = 8
	MaxImageSize = 1024
)

// Errors of Decode (and reasons for Load to skip a file). All three mean the
// input is bad, not that the program is.
var (
	// ErrUnsupportedFormat is returned for data that is not JPEG, PNG or GIF.
	ErrUnsupportedFormat = errors.New("unsupported format")
	// ErrImageTooLarge is returned for images of more than MaxPixels pixels
	// or MaxSide pixels a side.
	ErrImageTooLarge = errors.New("image too large")
	// ErrCorruptImage is returned for empty, truncated or malformed images.
	ErrCorruptImage = errors.New("corrupt image")
)

// Decode turns one JPEG, PNG or GIF image into size x size x 3 float32
// pixels in [0, 1], row-major HWC, with the preprocessing that Load applies
// to the training images: converted to RGB (transparent pixels over black),
// resized to a square ignoring the aspect ratio, quantised to 8 bits, then
// divided by 255. It never panics, also on hostile input.
func Decode(data []byte, size int) ([]float32, error) {
	img, err := DecodeImage(data)
	if err != nil {
		return nil, err
	}
	return Preprocess(img, size)
}

// DecodeConfig reads only the header of data and checks it as Decode does
// (format, dimensions, MaxSide, MaxPixels), without decoding any pixel or
// allocating for them: callers can total the pixels of several images before
// decoding one. Errors wrap ErrUnsupportedFormat, ErrImageTooLarge or
// ErrCorruptImage.
func DecodeConfig(data []byte) (image.Config, error) {
	cfg, _, err := checkHeader(data)
	if err != nil {
		return image.Config{}, fmt.Errorf("decode image: %w", err)
	}
	return cfg, nil
}

// DecodeImage is the first half of Decode: it checks the header (format,
// dimensions) before decoding any pixel, then decodes. Errors wrap
// ErrUnsupportedFormat, ErrImageTooLarge or ErrCorruptImage.
func DecodeImage(data []byte) (image.Image, error) {
	img, err := decodeChecked(data)
	if err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	return img, nil
}

// Preprocess is the second half of Decode: resize to size x size RGB,
// quantise to 8 bits, scale to [0, 1].
func Preprocess(img image.Image, size int) ([]float32, error) {
	if size < MinImageSize || size > MaxImageSize {
		return nil, fmt.Errorf("preprocess image: %w: size %d, want %d to %d", ErrInvalidOptions, size, MinImageSize, MaxImageSize)
	}
	pix := resizeRGB(img, size)
	out := make([]float32, len(pix))
	for i, v := range pix {
		out[i] = byteToFloat[v]
	}
	return out, nil
}

// DecodeRGB is Decode without the final scaling: the image resized to size x
// size RGB bytes (HWC), a quarter of the floats' memory. With AppendScaled it
// gives exactly Decode's values; a caller that decodes many images one at a
// time keeps only these small results between them.
func DecodeRGB(data []byte, size int) ([]uint8, error) {
	if size < MinImageSize || size > MaxImageSize {
		return nil, fmt.Errorf("decode image: %w: size %d, want %d to %d", ErrInvalidOptions, size, MinImageSize, MaxImageSize)
	}
	pix, err := decodeRGB(data, size)
	if err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	return pix, nil
}

// AppendScaled appends pix, bytes from DecodeRGB, to dst as float32 values
// in [0, 1], as Decode and the training batches scale them.
func AppendScaled(dst []float32, pix []uint8) []float32 {
	dst = slices.Grow(dst, len(pix))
	for _, v := range pix {
		dst = append(dst, byteToFloat[v])
	}
	return dst
}

// byteToFloat maps a byte to its value in [0, 1].
var byteToFloat = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// decodeRGB decodes data and resizes it to size x size RGB bytes (HWC).
func decodeRGB(data []byte, size int) ([]uint8, error) {
	img, err := decodeChecked(data)
	if err != nil {
		return nil, err
	}
	return resizeRGB(img, size), nil
}

// decodeChecked decodes data after checking its header.
func decodeChecked(data []byte) (image.Image, error) {
	_, format, err := checkHeader(data)
	if err != nil {
		return nil, err
	}
	img, err := safeDecode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrCorruptImage, detail(format, err))
	}
	if b := img.Bounds(); b.Empty() {
		return nil, fmt.Errorf("%w: %s has no pixels", ErrCorruptImage, format)
	}
	return img, nil
}

// checkHeader reads data's header and checks its format and dimensions.
func checkHeader(data []byte) (image.Config, string, error) {
	if len(data) == 0 {
		return image.Config{}, "", fmt.Errorf("%w: no data", ErrCorruptImage)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		return cfg, format, fmt.Errorf("%w: want jpeg, png or gif", ErrUnsupportedFormat)
	}
	if err != nil {
		return cfg, format, fmt.Errorf("%w: %s", ErrCorruptImage, detail(format, err))
	}
	switch format {
	case "jpeg", "png", "gif":
	default:
		return cfg, format, fmt.Errorf("%w: %s, want jpeg, png or gif", ErrUnsupportedFormat, format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return cfg, format, fmt.Errorf("%w: %s header says %dx%d", ErrCorruptImage, format, cfg.Width, cfg.Height)
	}
	if cfg.Width > MaxSide || cfg.Height > MaxSide {
		return cfg, format, fmt.Errorf("%w: %s is %dx%d, limit %d pixels a side", ErrImageTooLarge, format, cfg.Width, cfg.Height, MaxSide)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > MaxPixels {
		return cfg, format, fmt.Errorf("%w: %s is %dx%d (%.1f megapixels), limit %d megapixels", ErrImageTooLarge,
			format, cfg.Width, cfg.Height, float64(px)/1e6, MaxPixels/1_000_000)
	}
	return cfg, format, nil
}

// detail describes a decoder error, naming the format unless it does.
func detail(format string, err error) string {
	msg := err.Error()
	if format == "" || strings.HasPrefix(msg, format+":") {
		return msg
	}
	return format + ": " + msg
}

// safeDecode is image.Decode with a recover: the standard decoders are not
// supposed to panic, but a panic here would cross a goroutine or RPC boundary.
func safeDecode(data []byte) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("decoder panicked: %v", r)
		}
	}()
	img, _, err = image.Decode(bytes.NewReader(data))
	return img, err
}
