package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// Serving replicas follow a trainer through a shared directory (a
// ReadWriteMany volume): the trainer exports each newly served version of a
// variant as <dir>/<variant>/<version>.state (written aside, then renamed),
// then points <dir>/<variant>/SERVING at it (also renamed into place). A
// follower polls SERVING and hot-swaps the named state in; the state carries
// its own SHA-256, so a damaged file is refused and the old weights stay.
// Beside each state, <version>.lineage (JSON) lists the epochs that trained
// it, so a follower's CompareVariants reports what its weights cost.
const (
	servingFile   = "SERVING"
	stateSuffix   = ".state"
	lineageSuffix = ".lineage"
	keepExported  = 2 // a follower may still be reading the previous one
)

// exportedLineage is the file format of <version>.lineage; the epochs are
// encoded as the store keeps them.
type exportedLineage struct {
	Variant string              `json:"variant"`
	Version uint64              `json:"version"`
	Epochs  []checkpoints.Epoch `json:"epochs"`
}

// DefaultFollowInterval is how often a follower looks for a new version.
const DefaultFollowInterval = 5 * time.Second

// errReadOnly refuses what only the trainer may do.
var errReadOnly = errors.New("read-only replica")

func (s *Server) readOnly(what string) error {
	if s.opts.FollowDir == "" {
		return nil
	}
	return fmt.Errorf("%w: this server follows %s; %s on the trainer", errReadOnly, s.opts.FollowDir, what)
}

// exporter copies served versions to ExportDir, one goroutine per variant,
// latest version wins.
type exporter struct {
	pending map[string]chan uint64
}

// startExporter starts the export goroutines when ExportDir is set.
func (s *Server) startExporter() {
	if s.opts.ExportDir == "" {
		return
	}
	s.export = &exporter{pending: map[string]chan uint64{}}
	for _, name := range s.order {
		ch := make(chan uint64, 1)
		s.export.pending[name] = ch
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case version := <-ch:
					if err := s.exportVersion(name, version); err != nil {
						s.log.Error("export served version", "variant", name, "version", version, "err", err)
					}
				case <-s.ctx.Done():
					return
				}
			}
		}()
	}
}

// exported asks for version of variant to be exported; a newer request
// replaces one not yet started.
func (s *Server) exported(name string, version int64) {
	if s.export == nil || version <= 0 {
		return
	}
	ch := s.export.pending[name]
	for {
		select {
		case ch <- uint64(version):
			return
		default:
			select {
			case <-ch: // drop the older pending version
			default:
			}
		}
	}
}

// exportVersion writes one version's state and points SERVING at it.
func (s *Server) exportVersion(name string, version uint64) error {
	dir := filepath.Join(s.opts.ExportDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	final := filepath.Join(dir, strconv.FormatUint(version, 10)+stateSuffix)
	same, err := s.sameAsStored(final, name, version)
	if err != nil {
		return err
	}
	if !same {
		r, err := s.store.OpenVersion(name, version)
		if err != nil {
			return err
		}
		err = writeFileAtomic(final, func(f *os.File) error { _, err := io.Copy(f, r); return err })
		r.Close()
		if err != nil {
			return err
		}
	}
	epochs, err := s.servedLineage(name, int64(version))
	if err != nil {
		return err
	}
	lin := exportedLineage{Variant: name, Version: version, Epochs: epochs}
	if err := writeFileAtomic(filepath.Join(dir, strconv.FormatUint(version, 10)+lineageSuffix), func(f *os.File) error {
		return json.NewEncoder(f).Encode(lin)
	}); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, servingFile), func(f *os.File) error {
		_, err := fmt.Fprintf(f, "%d\n", version)
		return err
	}); err != nil {
		return err
	}
	return pruneExported(dir, version)
}

// sameAsStored reports whether the file at path holds exactly the stored
// version: a file of that name from an earlier store (its version numbers
// start again at 1 when the store is recreated but the export volume is
// kept) must be replaced, not served.
func (s *Server) sameAsStored(path, name string, version uint64) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	defer f.Close()
	man, err := s.store.Manifest(name, version)
	if err != nil {
		return false, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != man.Size {
		return false, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == man.SHA256, nil
}

// writeFileAtomic writes path through a temporary file, synced, then renamed.
func writeFileAtomic(path string, write func(*os.File) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// pruneExported keeps the served version and the newest others, keepExported in all.
func pruneExported(dir string, served uint64) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var versions []uint64
	for _, e := range entries {
		if v, ok := strings.CutSuffix(e.Name(), stateSuffix); ok {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && n != served {
				versions = append(versions, n)
			}
		}
	}
	slices.Sort(versions)
	for len(versions) > keepExported-1 {
		os.Remove(filepath.Join(dir, strconv.FormatUint(versions[0], 10)+stateSuffix))
		os.Remove(filepath.Join(dir, strconv.FormatUint(versions[0], 10)+lineageSuffix))
		versions = versions[1:]
	}
	return nil
}

// followOnce loads the version SERVING names for v, if it is not served
// already. It returns the version served after the call; 0 and no error
// when the trainer has exported nothing yet.
func (s *Server) followOnce(v *variant, m *model.Model) (int64, error) {
	dir := filepath.Join(s.opts.FollowDir, v.cfg.Name)
	raw, err := os.ReadFile(filepath.Join(dir, servingFile))
	if errors.Is(err, os.ErrNotExist) {
		return m.Served().Version(), nil
	}
	if err != nil {
		return 0, err
	}
	version, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil || version <= 0 {
		return 0, fmt.Errorf("%s: bad version %q", filepath.Join(dir, servingFile), raw)
	}
	if version == m.Served().Version() {
		return version, nil
	}
	// The lineage is read first: the trainer may prune it (with its state)
	// while the state loads. Without it the weights are still served, and
	// CompareVariants shows no training for them.
	epochs, err := readExportedLineage(filepath.Join(dir, strconv.FormatInt(version, 10)+lineageSuffix), v.cfg.Name, version)
	if err != nil {
		s.log.Warn("follow trainer: no training history for the followed version", "variant", v.cfg.Name, "version", version, "err", err)
	}
	f, err := os.Open(filepath.Join(dir, strconv.FormatInt(version, 10)+stateSuffix))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// ReadState verifies the whole state before it changes anything.
	if err := m.ReadState(f); err != nil {
		return 0, fmt.Errorf("load exported %s version %d: %w", v.cfg.Name, version, err)
	}
	if err := m.Publish(version); err != nil {
		return 0, err
	}
	v.mu.Lock()
	v.followed = followedLineage{version: version, epochs: epochs}
	v.mu.Unlock()
	if cur, _, _, _ := v.snapshot(); cur != nil { // loaded: keep its status current
		v.setStatus(flowerdpb.ModelStatus_MODEL_STATUS_READY, fmt.Sprintf("following %s: serving version %d", s.opts.FollowDir, version))
	}
	return version, nil
}

// followedLineage is the training history of the version a follower
// serves, read from the trainer's export.
type followedLineage struct {
	version int64
	epochs  []checkpoints.Epoch
}

// readExportedLineage reads a <version>.lineage file.
func readExportedLineage(path, name string, version int64) ([]checkpoints.Epoch, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lin exportedLineage
	if err := json.Unmarshal(raw, &lin); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if lin.Variant != name || int64(lin.Version) != version {
		return nil, fmt.Errorf("%s: describes %s version %d", path, lin.Variant, lin.Version)
	}
	return lin.Epochs, nil
}

// follow polls v's SERVING until the server closes.
func (s *Server) follow(ctx context.Context, v *variant) {
	t := time.NewTicker(s.opts.FollowInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m, _, _, _ := v.snapshot()
			before := m.Served().Version()
			after, err := s.followOnce(v, m)
			if err != nil {
				s.log.Warn("follow trainer", "variant", v.cfg.Name, "err", err)
			} else if after != before {
				s.log.Info("followed a new version", "variant", v.cfg.Name, "version", after)
			}
		}
	}
}
