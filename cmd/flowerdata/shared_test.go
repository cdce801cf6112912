package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sharedDir is the dataset as the project keeps it.
var sharedDir = filepath.Join("..", "..", "..", "shared", "data", "flowers17")

// TestReproducesSharedData packs the shared images the way 17flowers.tgz
// does (jpg/image_NNNN.jpg, numbered order, and jpg/files.txt), runs
// flowerdata on it with the embedded md5 list, and checks that the result is
// the shared folder, byte for byte: the same files, the same md5 sums, the
// same MD5SUMS.
func TestReproducesSharedData(t *testing.T) {
	if testing.Short() {
		t.Skip("packs and unpacks the 60 MB dataset; skipped with -short")
	}
	if _, err := os.Stat(filepath.Join(sharedDir, "MD5SUMS")); errors.Is(err, os.ErrNotExist) {
		t.Skipf("shared dataset not at %s", sharedDir)
	}
	want, err := parseSums(embeddedSums)
	if err != nil {
		t.Fatal(err)
	}
	byNumber := slices.Clone(want)
	slices.SortFunc(byNumber, func(a, b sum) int { return strings.Compare(a.name, b.name) })
	archive := filepath.Join(t.TempDir(), "17flowers.tgz")
	packShared(t, archive, byNumber)

	out := filepath.Join(t.TempDir(), "flowers17")
	stdout, _, err := run(t, want, "-out", out, "-archive", archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(stdout))

	got := md5Tree(t, out)
	shared := md5Tree(t, sharedDir)
	delete(shared, "README.md") // the project's own notes, not part of the archive
	for p, h := range shared {
		if got[p] != h {
			t.Errorf("%s: md5 %q; shared copy has %q", p, got[p], h)
		}
		delete(got, p)
	}
	for p := range got {
		t.Errorf("%s: not in the shared copy", p)
	}
}

// packShared writes the shared images to a .tgz in the official layout.
func packShared(t *testing.T, archive string, sums []sum) {
	t.Helper()
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, r io.Reader) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(&tar.Header{Name: "jpg/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	var list strings.Builder
	for _, s := range sums {
		fmt.Fprintln(&list, s.name)
		src, err := os.Open(filepath.Join(sharedDir, filepath.FromSlash(s.path)))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := src.Stat()
		if err != nil {
			t.Fatal(err)
		}
		add(&tar.Header{Name: "jpg/" + s.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime()}, src)
		src.Close()
	}
	add(&tar.Header{Name: "jpg/files.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(list.Len())}, strings.NewReader(list.String()))
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// md5Tree returns the md5 of every file under dir, by slash path.
func md5Tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		h, err := fileMD5(p)
		rel, _ := filepath.Rel(dir, p)
		sums[filepath.ToSlash(rel)] = h
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}
