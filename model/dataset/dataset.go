package dataset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors of Load, wrapped with the detail; test with errors.Is.
var (
	// ErrInvalidOptions is returned for options out of range.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrNoDir is returned when the dataset directory is unset, missing or
	// not a directory.
	ErrNoDir = errors.New("no dataset directory")
	// ErrNoClasses is returned when the dataset directory has no class folder.
	ErrNoClasses = errors.New("no class folders")
	// ErrEmptyClass is returned for a class folder without image files.
	ErrEmptyClass = errors.New("empty class folder")
	// ErrTooFewImages is returned for a class with fewer usable images than
	// the split takes from each class.
	ErrTooFewImages = errors.New("too few images")
	// ErrUnknownClass is returned when Options.Classes names a folder that
	// does not exist.
	ErrUnknownClass = errors.New("unknown class")
	// ErrUnreadable is returned when the dataset directory or a class
	// folder exists but cannot be read (permissions, an I/O error).
	ErrUnreadable = errors.New("dataset folder cannot be read")
)

// Split names one of the three disjoint parts of a Dataset.
type Split int

// The splits.
const (
	Train Split = iota
	Val
	Test
	numSplits
)

// String returns "train", "val" or "test".
func (s Split) String() string {
	switch s {
	case Train:
		return "train"
	case Val:
		return "val"
	case Test:
		return "test"
	}
	return "split(" + strconv.Itoa(int(s)) + ")"
}

// Option defaults.
const (
	DefaultImageSize     = 227
	DefaultTrainPerClass = 60
	DefaultValPerClass   = 10
	DefaultTestPerClass  = 10
)

// Options configure Load. The zero value of every field but Dir is a usable
// default.
type Options struct {
	// Dir is the dataset root: one sub-folder of images per class. The
	// class name is the folder name; classes are numbered in sorted order.
	// Files other than .jpg, .jpeg, .png and .gif, and hidden files and
	// folders, are ignored.
	Dir string
	// ImageSize is the side of the square images, default 227.
	ImageSize int
	// TrainPerClass, ValPerClass and TestPerClass are the number of images
	// each class gives to each split. If all three are zero they default to
	// 60, 10 and 10; otherwise they are taken as given, so a zero there
	// means an empty split.
	TrainPerClass, ValPerClass, TestPerClass int
	// Seed selects the split: the same seed and files always give the same
	// split, and a class's split does not depend on which other classes are
	// loaded.
	Seed int64
	// Classes optionally restricts the dataset to these class folders;
	// default all.
	Classes []string
	// Workers is the number of images decoded in parallel, default
	// runtime.GOMAXPROCS(0).
	Workers int
	// Logger receives a warning for each skipped file, default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: none given; %s", ErrNoDir, howToPoint)
	}
	if o.ImageSize == 0 {
		o.ImageSize = DefaultImageSize
	}
	if o.ImageSize < MinImageSize || o.ImageSize > MaxImageSize {
		return o, fmt.Errorf("%w: image size %d, want %d to %d", ErrInvalidOptions, o.ImageSize, MinImageSize, MaxImageSize)
	}
	if o.TrainPerClass < 0 || o.ValPerClass < 0 || o.TestPerClass < 0 {
		return o, fmt.Errorf("%w: negative images per class (train %d, val %d, test %d)",
			ErrInvalidOptions, o.TrainPerClass, o.ValPerClass, o.TestPerClass)
	}
	if o.TrainPerClass == 0 && o.ValPerClass == 0 && o.TestPerClass == 0 {
		o.TrainPerClass, o.ValPerClass, o.TestPerClass = DefaultTrainPerClass, DefaultValPerClass, DefaultTestPerClass
	}
	if o.Workers < 0 {
		return o, fmt.Errorf("%w: %d workers", ErrInvalidOptions, o.Workers)
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	seen := make(map[string]bool, len(o.Classes))
	for _, c := range o.Classes {
		if seen[c] {
			return o, fmt.Errorf("%w: class %q listed twice", ErrInvalidOptions, c)
		}
		seen[c] = true
	}
	return o, nil
}

// howToPoint tells the user how to point flowerd at the data.
const howToPoint = "want a folder with one sub-folder of images per class (the server's -dataset flag or FLOWERD_DATASET; " +
	"a request's dataset_dir; FLOWERD_DATA for the tests)"

func (o Options) perClass() int { return o.TrainPerClass + o.ValPerClass + o.TestPerClass }

// Dataset is a split, decoded image dataset held in memory. It is immutable
// after Load and safe for concurrent use.
type Dataset struct {
	classes     []string
	size        int
	splits      [numSplits][]example
	skipped     []string
	fingerprint string
}

// example is one decoded image.
type example struct {
	label int32
	file  string  // path relative to the dataset root, slash-separated
	pix   []uint8 // size*size*3 RGB, HWC
}

// file is one image file of a class folder.
type file struct {
	name string
	size int64
}

// Load lists the class folders under opts.Dir, draws a stratified split with
// opts.Seed, and decodes the images of the split in parallel. It reads only
// the files that the split needs: those a class's seeded permutation puts
// first, and the next ones in place of any that cannot be decoded (skipped
// with a warning, see Skipped).
func Load(ctx context.Context, opts Options) (*Dataset, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	classes, files, err := scan(o)
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	need := o.perClass()
	for c, fs := range files {
		if len(fs) < need {
			return nil, fmt.Errorf("load dataset: %w: class %q has %d images, needs %d (train %d + val %d + test %d)",
				ErrTooFewImages, classes[c], len(fs), need, o.TrainPerClass, o.ValPerClass, o.TestPerClass)
		}
	}

	// Each class's files in the order its seeded permutation gives.
	order := make([][]int, len(classes))
	for c := range classes {
		r := rand.NewPCG(uint64(o.Seed), mix(domainSplit, fnv64(classes[c])))
		order[c] = permutation(r, len(files[c]))
	}

	// Decode in rounds: first the files each class needs, then as many
	// further ones as failed. The result does not depend on timing.
	pix := make([][][]uint8, len(classes)) // by class, by file index
	errs := make([][]error, len(classes))
	next := make([]int, len(classes)) // next position in order[c] to try
	good := make([]int, len(classes))
	var skipped []string
	for c := range classes {
		pix[c] = make([][]uint8, len(files[c]))
		errs[c] = make([]error, len(files[c]))
	}
	type job struct{ class, file int }
	for {
		var jobs []job
		for c := range classes {
			for k := good[c]; k < need && next[c] < len(order[c]); k++ {
				jobs = append(jobs, job{c, order[c][next[c]]})
				next[c]++
			}
		}
		if len(jobs) == 0 {
			break
		}
		parallel(ctx, o.Workers, len(jobs), func(i int) {
			j := jobs[i]
			path := filepath.Join(o.Dir, classes[j.class], files[j.class][j.file].name)
			pix[j.class][j.file], errs[j.class][j.file] = readImage(path, o.ImageSize)
		})
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("load dataset: %w", err)
		}
		for _, j := range jobs {
			if err := errs[j.class][j.file]; err != nil {
				rel := classes[j.class] + "/" + files[j.class][j.file].name
				o.Logger.Warn("dataset: skipping image", "file", filepath.Join(o.Dir, rel), "err", err)
				skipped = append(skipped, rel+": "+err.Error())
			} else {
				good[j.class]++
			}
		}
	}

	d := &Dataset{classes: classes, size: o.ImageSize, skipped: skipped}
	counts := [numSplits]int{o.TrainPerClass, o.ValPerClass, o.TestPerClass}
	for c := range classes {
		if good[c] < need {
			return nil, fmt.Errorf("load dataset: %w: class %q has %d decodable images (%d skipped), needs %d (train %d + val %d + test %d)",
				ErrTooFewImages, classes[c], good[c], next[c]-good[c], need, o.TrainPerClass, o.ValPerClass, o.TestPerClass)
		}
		s, taken := Train, 0
		for _, f := range order[c][:next[c]] {
			if pix[c][f] == nil {
				continue
			}
			for taken == counts[s] {
				s, taken = s+1, 0
			}
			d.splits[s] = append(d.splits[s], example{label: int32(c), file: classes[c] + "/" + files[c][f].name, pix: pix[c][f]})
			taken++
		}
	}
	for s := range d.splits {
		slices.SortFunc(d.splits[s], func(a, b example) int { return strings.Compare(a.file, b.file) })
	}
	d.fingerprint = fingerprint(o, classes, files, d)
	return d, nil
}

// scan lists the class folders of o.Dir (or o.Classes) and their image files,
// sorted by name.
func scan(o Options) ([]string, [][]file, error) {
	fi, err := os.Stat(o.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("%w: %s does not exist; %s", ErrNoDir, o.Dir, howToPoint)
	case errors.Is(err, fs.ErrPermission):
		return nil, nil, unreadable(o.Dir, err)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %v; %s", ErrNoDir, err, howToPoint)
	case !fi.IsDir():
		return nil, nil, fmt.Errorf("%w: %s is not a directory; %s", ErrNoDir, o.Dir, howToPoint)
	}
	entries, err := os.ReadDir(o.Dir)
	if err != nil {
		return nil, nil, unreadable(o.Dir, err)
	}
	var all []string
	for _, e := range entries {
		if isHidden(e.Name()) {
			continue
		}
		if isDir(o.Dir, e) {
			all = append(all, e.Name())
		}
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("%w in %s; %s", ErrNoClasses, o.Dir, howToPoint)
	}
	classes := all
	if len(o.Classes) > 0 {
		for _, c := range o.Classes {
			if !slices.Contains(all, c) {
				return nil, nil, fmt.Errorf("%w: %q is not a folder of %s (it has %s)", ErrUnknownClass, c, o.Dir, strings.Join(all, ", "))
			}
		}
		classes = slices.Clone(o.Classes)
		slices.Sort(classes)
	}
	files := make([][]file, len(classes))
	for c, name := range classes {
		dir := filepath.Join(o.Dir, name)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, unreadable(dir, err)
		}
		for _, e := range entries {
			if isHidden(e.Name()) || !isImageName(e.Name()) || isDir(dir, e) {
				continue
			}
			info, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, nil, unreadable(filepath.Join(dir, e.Name()), err)
			}
			files[c] = append(files[c], file{name: e.Name(), size: info.Size()})
		}
		if len(files[c]) == 0 {
			return nil, nil, fmt.Errorf("%w: %s has no .jpg, .jpeg, .png or .gif files", ErrEmptyClass, dir)
		}
	}
	return classes, files, nil
}

// unreadable explains that path, which exists, could not be read.
func unreadable(path string, err error) error {
	// A *PathError names the path again; keep only the reason.
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		err = pe.Err
	}
	return fmt.Errorf("%w: %s: %v; the server's user needs read and search (r-x) permission on the dataset folder, its class folders and their images",
		ErrUnreadable, path, err)
}

func isHidden(name string) bool { return strings.HasPrefix(name, ".") }

func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png", ".gif":
		return true
	}
	return false
}

// isDir reports whether e is a directory, following a symbolic link.
func isDir(dir string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir()
	}
	fi, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && fi.IsDir()
}

// readImage reads and decodes one image file.
func readImage(path string, size int) ([]uint8, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pix, err := decodeRGB(data, size)
	if err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	return pix, nil
}

// parallel calls f(0..n-1) on up to workers goroutines and returns when all
// calls have returned; after ctx is cancelled it starts no more calls.
func parallel(ctx context.Context, workers, n int, f func(i int)) {
	workers = min(workers, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// fingerprint hashes what determines the dataset's contents: the options
// that shape it and the name and size of every file of every split.
func fingerprint(o Options, classes []string, files [][]file, d *Dataset) string {
	size := make(map[string]int64)
	for c, fs := range files {
		for _, f := range fs {
			size[classes[c]+"/"+f.name] = f.size
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "flowerd dataset v1\nimage size %d\nper class %d %d %d\nseed %d\nclasses %q\n",
		o.ImageSize, o.TrainPerClass, o.ValPerClass, o.TestPerClass, o.Seed, classes)
	for s, exs := range d.splits {
		for _, e := range exs {
			fmt.Fprintf(h, "%s %d %q %d\n", Split(s), e.label, e.file, size[e.file])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Classes returns the class names; a label is an index into it.
func (d *Dataset) Classes() []string { return slices.Clone(d.classes) }

// ImageSize returns the side of the square images.
func (d *Dataset) ImageSize() int { return d.size }

// Len returns the number of examples in split s.
func (d *Dataset) Len(s Split) int {
	if s < 0 || s >= numSplits {
		return 0
	}
	return len(d.splits[s])
}

// Files returns the files of split s, relative to the dataset root, in the
// unshuffled order of Batches.
func (d *Dataset) Files(s Split) []string {
	if s < 0 || s >= numSplits {
		return nil
	}
	out := make([]string, len(d.splits[s]))
	for i, e := range d.splits[s] {
		out[i] = e.file
	}
	return out
}

// Fingerprint returns a hex SHA-256 of the class names, the split options
// and the name and size of every file in every split, for run records: two
// datasets with the same fingerprint hold the same examples in the same
// splits.
func (d *Dataset) Fingerprint() string { return d.fingerprint }

// Skipped returns the files that could not be decoded and were left out,
// as "class/file: reason".
func (d *Dataset) Skipped() []string { return slices.Clone(d.skipped) }
