package model

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
)

// The state format: stateMagic, a big-endian uint32 header length, the JSON
// header, each variable's raw little-endian values in header order, and the
// SHA-256 of everything before it.
const (
	stateMagic     = "FLOWERD-STATE\n"
	stateFormat    = 1
	maxHeaderBytes = 1 << 20
)

type stateHeader struct {
	Format    int        `json:"format"`
	Variant   Variant    `json:"variant"`
	Classes   []string   `json:"classes"`
	ImageSize int        `json:"image_size"`
	Seed      int64      `json:"seed"`
	Progress  Progress   `json:"progress"`
	Variables []stateVar `json:"variables"`
}

type stateVar struct {
	Path      string `json:"path"`
	DType     string `json:"dtype"`
	Dims      []int  `json:"dims"`
	Trainable bool   `json:"trainable"`
}

func (v stateVar) shape() (shapes.Shape, error) {
	dt, err := dtypes.DTypeString(v.DType)
	if err != nil {
		return shapes.Shape{}, fmt.Errorf("variable %s: dtype %q: %w", v.Path, v.DType, err)
	}
	for _, d := range v.Dims {
		if d < 0 || d > 1<<28 {
			return shapes.Shape{}, fmt.Errorf("variable %s: dimension %d out of range", v.Path, d)
		}
	}
	return shapes.Make(dt, v.Dims...), nil
}

// StateInfo describes serialised training state without loading it.
type StateInfo struct {
	Variant   Variant
	Classes   []string
	ImageSize int
	Seed      int64
	Progress  Progress
	// Bytes is the size of the variables' data.
	Bytes int64
}

// WriteState writes the complete training state — weights, momentum
// velocities, RNG state, progress and the variant that built it — to w,
// streaming one variable at a time. It waits for a running training step.
func (m *Model) WriteState(w io.Writer) error {
	m.train.Lock()
	defer m.train.Unlock()
	return m.writeStateLocked(w)
}

func (m *Model) writeStateLocked(w io.Writer) error {
	h := stateHeader{Format: stateFormat, Variant: m.variant, Classes: m.opts.Classes,
		ImageSize: m.opts.ImageSize, Seed: m.opts.Seed, Progress: m.progress}
	var vars []*gmx.Variable
	for v := range m.store.IterVariables() {
		vars = append(vars, v)
		s := v.Shape()
		h.Variables = append(h.Variables, stateVar{Path: v.Path(), DType: s.DType.String(),
			Dims: slices.Clone(s.Dimensions), Trainable: v.Trainable})
	}
	header, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<20)
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(header)))
	for _, b := range [][]byte{[]byte(stateMagic), lenBuf[:], header} {
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	for _, v := range vars {
		t, err := v.Value()
		if err != nil {
			return fmt.Errorf("write state: %s: %w", v.Path(), err)
		}
		var werr error
		if err := t.ConstBytes(func(data []byte) { _, werr = bw.Write(data) }); err != nil {
			return fmt.Errorf("write state: %s: %w", v.Path(), err)
		}
		if werr != nil {
			return fmt.Errorf("write state: %s: %w", v.Path(), werr)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readHeader reads the magic and header, hashing what it reads.
func readHeader(r io.Reader, sum hash.Hash) (stateHeader, error) {
	var h stateHeader
	prefix := make([]byte, len(stateMagic)+4)
	if _, err := io.ReadFull(r, prefix); err != nil {
		return h, fmt.Errorf("%w: reading header: %w", ErrBadState, noEOF(err))
	}
	if string(prefix[:len(stateMagic)]) != stateMagic {
		return h, fmt.Errorf("%w: not a flowerd model state", ErrBadState)
	}
	n := binary.BigEndian.Uint32(prefix[len(stateMagic):])
	if n > maxHeaderBytes {
		return h, fmt.Errorf("%w: header of %d bytes", ErrBadState, n)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(r, header); err != nil {
		return h, fmt.Errorf("%w: reading header: %w", ErrBadState, noEOF(err))
	}
	sum.Write(prefix)
	sum.Write(header)
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrBadState, err)
	}
	if h.Format != stateFormat {
		return h, fmt.Errorf("%w: format %d, this build reads format %d", ErrBadState, h.Format, stateFormat)
	}
	return h, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadStateInfo reads the header of serialised state.
func ReadStateInfo(r io.Reader) (StateInfo, error) {
	h, err := readHeader(r, sha256.New())
	if err != nil {
		return StateInfo{}, err
	}
	info := StateInfo{Variant: h.Variant, Classes: h.Classes, ImageSize: h.ImageSize, Seed: h.Seed, Progress: h.Progress}
	for _, v := range h.Variables {
		s, err := v.shape()
		if err != nil {
			return StateInfo{}, fmt.Errorf("%w: %w", ErrBadState, err)
		}
		info.Bytes += int64(s.Memory())
	}
	return info, nil
}

// ReadState replaces the training state with the one serialised in r (by
// WriteState of a model of the same variant and sizes). The state is
// verified in full before anything changes: on error the model is as it
// was. It fails with ErrBusy while the model trains. The served weights do
// not change until the next Publish.
func (m *Model) ReadState(r io.Reader) error {
	if !m.train.TryLock() {
		return ErrBusy
	}
	defer m.train.Unlock()
	sum := sha256.New()
	br := bufio.NewReaderSize(r, 1<<20)
	h, err := readHeader(br, sum)
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	if err := m.checkHeader(h); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	store := m.newStore()
	tr := io.TeeReader(br, sum)
	for _, sv := range h.Variables {
		shape, _ := sv.shape() // checked by checkHeader
		t := tensors.FromShape(shape)
		var rerr error
		if err := t.MutableBytes(func(data []byte) { _, rerr = io.ReadFull(tr, data) }); err != nil {
			return fmt.Errorf("read state: %s: %w", sv.Path, err)
		}
		if rerr != nil {
			return fmt.Errorf("read state: %w: %s: %w", ErrBadState, sv.Path, noEOF(rerr))
		}
		v, err := store.CreateVariable(sv.Path, t)
		if err != nil {
			return fmt.Errorf("read state: %s: %w", sv.Path, err)
		}
		v.SetTrainable(sv.Trainable)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, want); err != nil {
		return fmt.Errorf("read state: %w: checksum: %w", ErrBadState, noEOF(err))
	}
	if !bytes.Equal(want, sum.Sum(nil)) {
		return fmt.Errorf("read state: %w: checksum mismatch", ErrBadState)
	}
	if err := m.setTrainingStore(store); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	m.progress = h.Progress
	return nil
}

// checkHeader reports whether state with header h fits this model: same
// architecture, sizes and variables.
func (m *Model) checkHeader(h stateHeader) error {
	a, b := h.Variant, m.variant
	if a.PoolStrides != b.PoolStrides || a.Regularization != b.Regularization || a.KeepProbabilities() != b.KeepProbabilities() {
		return fmt.Errorf("%w: state is of variant %s (%+v), the model is %s (%+v)", ErrStateMismatch, a.Name, a, b.Name, b)
	}
	if !slices.Equal(h.Classes, m.opts.Classes) || h.ImageSize != m.opts.ImageSize {
		return fmt.Errorf("%w: state has classes %q at %dpx, the model %q at %dpx",
			ErrStateMismatch, h.Classes, h.ImageSize, m.opts.Classes, m.opts.ImageSize)
	}
	want := map[string]shapes.Shape{}
	for v := range m.store.IterVariables() {
		want[v.Path()] = v.Shape()
	}
	if len(h.Variables) != len(want) {
		return fmt.Errorf("%w: state has %d variables, the model %d", ErrStateMismatch, len(h.Variables), len(want))
	}
	for _, sv := range h.Variables {
		s, err := sv.shape()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadState, err)
		}
		if w, ok := want[sv.Path]; !ok || !w.Equal(s) {
			return fmt.Errorf("%w: variable %s %s does not match the model's %s", ErrStateMismatch, sv.Path, s, w)
		}
	}
	return nil
}
