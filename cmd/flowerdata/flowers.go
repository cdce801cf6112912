package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// classes are the folder names in the dataset's order: image NNNN is of
// class (NNNN-1)/perClass (shared/data/flowers17/README.md).
var classes = []string{
	"daffodil", "snowdrop", "lilyvalley", "bluebell", "crocus", "iris",
	"tigerlily", "tulip", "fritillary", "sunflower", "daisy", "coltsfoot",
	"dandelion", "cowslip", "buttercup", "windflower", "pansy",
}

const (
	perClass = 80
	// maxImageBytes bounds one image (the largest is 131 kB), so a corrupt or
	// hostile archive cannot fill the disk.
	maxImageBytes = 16 << 20
)

// embeddedSums is the md5 of every image, `md5sum` style, with paths
// class/image_NNNN.jpg (a copy of shared/data/flowers17/MD5SUMS).
//
//go:embed md5sums.txt
var embeddedSums string

// Errors that unpack wraps.
var (
	errUnsafePath = errors.New("path leaves the archive's folder")
	errMismatch   = errors.New("md5 mismatch")
	errMissing    = errors.New("images missing from the archive")
	errUnexpected = errors.New("unexpected image")
)

// imageName matches the archive's image files.
var imageName = regexp.MustCompile(`^image_([0-9]{4})\.jpg$`)

// sum is one image's expected md5.
type sum struct {
	name string // image_NNNN.jpg
	path string // class/image_NNNN.jpg
	md5  string // lower-case hex
}

// parseSums parses an md5 list whose paths are class/image_NNNN.jpg and
// checks that each image is in the class its number says.
func parseSums(text string) ([]sum, error) {
	var sums []sum
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"MD5  class/image_NNNN.jpg\", have %q", i+1, line)
		}
		md5hex, p := f[0], strings.TrimPrefix(f[1], "*")
		if b, err := hex.DecodeString(md5hex); err != nil || len(b) != md5.Size || md5hex != strings.ToLower(md5hex) {
			return nil, fmt.Errorf("line %d: %q is not an md5 in lower-case hex", i+1, md5hex)
		}
		class, name, _ := strings.Cut(p, "/")
		m := imageName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("line %d: %q is not class/image_NNNN.jpg", i+1, p)
		}
		n, _ := strconv.Atoi(m[1])
		if n < 1 || n > perClass*len(classes) {
			return nil, fmt.Errorf("line %d: %s: no image number %d in the dataset", i+1, p, n)
		}
		if want := classes[(n-1)/perClass]; class != want {
			return nil, fmt.Errorf("line %d: %s: image %d is of class %s", i+1, p, n, want)
		}
		if seen[name] {
			return nil, fmt.Errorf("line %d: %s listed twice", i+1, name)
		}
		seen[name] = true
		sums = append(sums, sum{name: name, path: p, md5: md5hex})
	}
	return sums, nil
}

// formatSums writes sums as `md5sum` does, sorted by path.
func formatSums(sums []sum) []byte {
	s := slices.Clone(sums)
	slices.SortFunc(s, func(a, b sum) int { return strings.Compare(a.path, b.path) })
	var b bytes.Buffer
	for _, x := range s {
		fmt.Fprintf(&b, "%s  %s\n", x.md5, x.path)
	}
	return b.Bytes()
}

// classesOf returns the class folders that sums use, in order.
func classesOf(sums []sum) []string {
	var cs []string
	for _, s := range sums {
		c, _, _ := strings.Cut(s.path, "/")
		if !slices.Contains(cs, c) {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b string) int { return slices.Index(classes, a) - slices.Index(classes, b) })
	return cs
}

// unpack reads a .tgz from r and writes each image in want to
// dir/class/image_NNNN.jpg, checking its md5. Any image not in want, any
// image of want that is missing, and any entry whose name leaves the
// archive's folder is an error. Other entries (the archive's files.txt,
// folders) are skipped. It returns the md5 of r's bytes.
func unpack(ctx context.Context, r io.Reader, dir string, want []sum) (string, error) {
	byName := make(map[string]sum, len(want))
	for _, s := range want {
		byName[s.name] = s
	}
	for _, c := range classesOf(want) {
		if err := os.MkdirAll(filepath.Join(dir, c), 0o755); err != nil {
			return "", err
		}
	}

	whole := md5.New()
	raw := io.TeeReader(r, whole)
	zr, err := gzip.NewReader(raw)
	if err != nil {
		return "", fmt.Errorf("read archive: %w", err)
	}
	tr := tar.NewReader(zr)
	got := map[string]bool{}
	var bad []string
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // checked below, whatever GODEBUG says
			return "", fmt.Errorf("read archive: %w", err)
		}
		if !localName(hdr.Name) {
			return "", fmt.Errorf("archive entry %q: %w", hdr.Name, errUnsafePath)
		}
		if !localLink(hdr) {
			return "", fmt.Errorf("archive entry %q: link to %q: %w", hdr.Name, hdr.Linkname, errUnsafePath)
		}
		name := path.Base(hdr.Name)
		if !imageName.MatchString(name) {
			continue
		}
		s, ok := byName[name]
		switch {
		case !ok:
			return "", fmt.Errorf("archive entry %q: %w: not in the md5 list", hdr.Name, errUnexpected)
		case got[name]:
			return "", fmt.Errorf("archive entry %q: %w: %s is in the archive twice", hdr.Name, errUnexpected, name)
		case hdr.Typeflag != tar.TypeReg:
			return "", fmt.Errorf("archive entry %q: %w: not a regular file", hdr.Name, errUnexpected)
		}
		got[name] = true
		h, err := writeImage(filepath.Join(dir, filepath.FromSlash(s.path)), tr)
		if err != nil {
			return "", fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		if h != s.md5 {
			bad = append(bad, fmt.Sprintf("%s (%s) has md5 %s, want %s", hdr.Name, s.path, h, s.md5))
		}
	}
	// Read to the end: gzip checks its CRC, and the md5 covers every byte.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return "", fmt.Errorf("read archive: %w", err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return "", fmt.Errorf("read archive: %w", err)
	}

	if len(bad) > 0 {
		return "", fmt.Errorf("%w: %s", errMismatch, list(bad))
	}
	var missing []string
	for _, s := range want {
		if !got[s.name] {
			missing = append(missing, s.name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%d of %d %w: %s", len(missing), len(want), errMissing, list(missing))
	}
	return hex.EncodeToString(whole.Sum(nil)), nil
}

// localName reports whether a tar entry's name stays inside the folder the
// archive is unpacked in.
func localName(name string) bool {
	return !strings.Contains(name, `\`) && filepath.IsLocal(filepath.FromSlash(name))
}

// localLink reports whether a link entry points inside the folder the
// archive is unpacked in (no link is ever created, but an archive that has
// such links is not the official one).
func localLink(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeSymlink: // relative to the link's folder
		return !path.IsAbs(hdr.Linkname) && localName(path.Join(path.Dir(hdr.Name), hdr.Linkname))
	case tar.TypeLink: // relative to the archive's root
		return localName(hdr.Linkname)
	}
	return true
}

// writeImage copies at most maxImageBytes from r to a new file and returns
// the md5 of what it wrote.
func writeImage(name string, r io.Reader) (string, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, maxImageBytes+1))
	if err == nil && n > maxImageBytes {
		err = fmt.Errorf("larger than %d bytes: not one of the dataset's images", maxImageBytes)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyDir checks that dir holds every image of want with its md5, and the
// MD5SUMS file that flowerdata writes.
func verifyDir(dir string, want []sum) error {
	b, err := os.ReadFile(filepath.Join(dir, "MD5SUMS"))
	if err != nil {
		return err
	}
	if !bytes.Equal(b, formatSums(want)) {
		return errors.New("MD5SUMS differs from the expected list")
	}
	var bad []string
	for _, s := range want {
		h, err := fileMD5(filepath.Join(dir, filepath.FromSlash(s.path)))
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case h != s.md5:
			bad = append(bad, fmt.Sprintf("%s has md5 %s, want %s", s.path, h, s.md5))
		}
	}
	if len(bad) > 0 {
		return errors.New(list(bad))
	}
	return nil
}

func fileMD5(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// list joins the first few items of s and says how many more there are.
func list(s []string) string {
	const most = 5
	if len(s) <= most {
		return strings.Join(s, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(s[:most], "; "), len(s)-most)
}
