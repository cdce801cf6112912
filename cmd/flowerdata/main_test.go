package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// entry is one file of a test archive.
type entry struct {
	name string
	body []byte
	typ  byte // tar.TypeReg when 0
	link string
}

// fakeImage is the content of image n in the test archives.
func fakeImage(n int) []byte {
	return []byte(fmt.Sprintf("\xff\xd8\xff\xe0 not really image %d \xff\xd9", n))
}

// image is image n as the official archive holds it.
func image(n int) entry {
	return entry{name: fmt.Sprintf("jpg/image_%04d.jpg", n), body: fakeImage(n)}
}

// makeTGZ writes entries as a .tgz.
func makeTGZ(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		switch e.typ {
		case 0:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeTGZ writes a .tgz of entries in a new folder and returns its path.
func writeTGZ(t *testing.T, entries ...entry) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "17flowers.tgz")
	if err := os.WriteFile(name, makeTGZ(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

// sumsOf is the md5 list of the fake images ns.
func sumsOf(t *testing.T, ns ...int) []sum {
	t.Helper()
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "%s  %s/image_%04d.jpg\n", md5hex(fakeImage(n)), classes[(n-1)/perClass], n)
	}
	s, err := parseSums(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs flowerdata with args, expecting the images in want.
func run(t *testing.T, want []sum, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	c, err := parseFlags(args, &o, &e)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	c.want = want
	err = c.fetch(context.Background())
	return o.String(), e.String(), err
}

// listDir returns the files under dir, as slash paths, with their content.
func listDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// checkNoLeftovers fails if parent holds anything but the folders named.
func checkNoLeftovers(t *testing.T, parent string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
	}
	if !slices.Equal(have, want) {
		t.Errorf("%s holds %q; want %q", parent, have, want)
	}
}

func TestSortsIntoClasses(t *testing.T) {
	ns := []int{1, 80, 81, 160, 641, 1200, 1201, 1360}
	entries := []entry{{name: "jpg/", typ: tar.TypeDir}, {name: "jpg/files.txt", body: []byte("image_0001.jpg\n")}}
	for _, n := range ns {
		entries = append(entries, image(n))
	}
	archive := writeTGZ(t, entries...)
	parent := t.TempDir()
	out := filepath.Join(parent, "flowers17")
	want := sumsOf(t, ns...)

	stdout, _, err := run(t, want, "-out", out, "-archive", archive)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "8 images in 6 class folders") {
		t.Errorf("stdout = %q; want it to say 8 images in 6 class folders", stdout)
	}
	files := listDir(t, out)
	for _, tc := range []struct {
		n     int
		class string
	}{
		{1, "daffodil"}, {80, "daffodil"}, {81, "snowdrop"}, {160, "snowdrop"},
		{641, "fritillary"}, {1200, "buttercup"}, {1201, "windflower"}, {1360, "pansy"},
	} {
		p := fmt.Sprintf("%s/image_%04d.jpg", tc.class, tc.n)
		if got, ok := files[p]; !ok || got != string(fakeImage(tc.n)) {
			t.Errorf("image %d: %s missing or wrong (present %v)", tc.n, p, ok)
		}
		delete(files, p)
	}
	wantSums := fmt.Sprintf("%s  buttercup/image_1200.jpg\n", md5hex(fakeImage(1200)))
	if got := files["MD5SUMS"]; !strings.HasPrefix(got, wantSums) || strings.Count(got, "\n") != len(ns) {
		t.Errorf("MD5SUMS = %q; want %d lines sorted by path, from %q", got, len(ns), wantSums)
	}
	delete(files, "MD5SUMS")
	if len(files) > 0 {
		t.Errorf("unexpected files in %s: %q", out, slices.Sorted(maps.Keys(files)))
	}
	checkNoLeftovers(t, parent, "flowers17")
	if err := verifyDir(out, want); err != nil {
		t.Errorf("verifyDir(%s) = %v; want nil", out, err)
	}
}

func TestBadArchives(t *testing.T) {
	ns := []int{1, 81, 1360}
	good := []entry{image(1), image(81), image(1360)}
	tests := []struct {
		name    string
		entries []entry
		want    error
		in      string // in the error message
	}{
		{"changed image", []entry{image(1), {name: "jpg/image_0081.jpg", body: []byte("changed")}, image(1360)},
			errMismatch, "snowdrop/image_0081.jpg"},
		{"missing image", good[:2], errMissing, "image_1360.jpg"},
		{"image not in the list", append(slices.Clone(good), image(2)), errUnexpected, "image_0002.jpg"},
		{"image twice", append(slices.Clone(good), entry{name: "other/image_0081.jpg", body: fakeImage(81)}), errUnexpected, "twice"},
		{"image is a symlink", []entry{image(1), {name: "jpg/image_0081.jpg", typ: tar.TypeSymlink, link: "image_0001.jpg"}, image(1360)},
			errUnexpected, "not a regular file"},
		{"parent folder", append(slices.Clone(good), entry{name: "../image_0002.jpg", body: fakeImage(2)}), errUnsafePath, "../image_0002.jpg"},
		{"parent folder, not an image", append(slices.Clone(good), entry{name: "jpg/../../evil.sh", body: []byte("x")}), errUnsafePath, "evil.sh"},
		{"absolute path", append([]entry{{name: "/tmp/image_0001.jpg", body: fakeImage(1)}}, good...), errUnsafePath, "/tmp/image_0001.jpg"},
		{"symlink out", append(slices.Clone(good), entry{name: "jpg/up", typ: tar.TypeSymlink, link: "../../etc"}), errUnsafePath, "../../etc"},
		{"absolute symlink", append(slices.Clone(good), entry{name: "jpg/passwd", typ: tar.TypeSymlink, link: "/etc/passwd"}), errUnsafePath, "/etc/passwd"},
		{"hard link out", append(slices.Clone(good), entry{name: "jpg/h", typ: tar.TypeLink, link: "../secret"}), errUnsafePath, "../secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			archive := writeTGZ(t, tc.entries...)
			parent := t.TempDir()
			out := filepath.Join(parent, "flowers17")
			_, _, err := run(t, sumsOf(t, ns...), "-out", out, "-archive", archive)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("flowerdata -archive (%s) = %v; want %v naming %q", tc.name, err, tc.want, tc.in)
			}
			checkNoLeftovers(t, parent) // nothing written, not even a partial folder
		})
	}
}

func TestNotAnArchive(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"not gzip", []byte("<html>not found</html>")},
		{"truncated", makeTGZ(t, image(1))[:60]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(dir, tc.name+".tgz")
			if err := os.WriteFile(archive, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := run(t, sumsOf(t, 1), "-out", filepath.Join(dir, "out"), "-archive", archive)
			if err == nil || !strings.Contains(err.Error(), archive) {
				t.Errorf("flowerdata -archive %s = %v; want an error naming the archive", tc.name, err)
			}
		})
	}
	_, _, err := run(t, sumsOf(t, 1), "-out", filepath.Join(dir, "out"), "-archive", filepath.Join(dir, "absent.tgz"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("flowerdata -archive absent.tgz = %v; want ErrNotExist", err)
	}
	checkNoLeftovers(t, dir, "not gzip.tgz", "truncated.tgz")
}

func TestIdempotent(t *testing.T) {
	ns := []int{1, 400, 1360}
	want := sumsOf(t, ns...)
	archive := writeTGZ(t, image(1), image(400), image(1360))
	parent := t.TempDir()
	out := filepath.Join(parent, "flowers17")
	if _, _, err := run(t, want, "-out", out, "-archive", archive); err != nil {
		t.Fatal(err)
	}
	first := listDir(t, out)

	// Complete and verified: left alone, the archive not even opened.
	absent := filepath.Join(parent, "absent.tgz")
	stdout, _, err := run(t, want, "-out", out, "-archive", absent)
	if err != nil || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("second run = %v, %q; want nil, nothing to do", err, stdout)
	}
	if got := listDir(t, out); !maps.Equal(got, first) {
		t.Errorf("second run changed %s", out)
	}

	// A damaged copy is not replaced without -force, and the error says why.
	damaged := filepath.Join(out, "crocus", "image_0400.jpg")
	if err := os.WriteFile(damaged, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, want, "-out", out, "-archive", archive)
	if err == nil || !strings.Contains(err.Error(), "crocus/image_0400.jpg") || !strings.Contains(err.Error(), "-force") {
		t.Errorf("run on a damaged copy = %v; want an error naming crocus/image_0400.jpg and -force", err)
	}
	if err := os.Remove(filepath.Join(out, "MD5SUMS")); err != nil {
		t.Fatal(err)
	}
	if _, _, err = run(t, want, "-out", out, "-archive", archive); err == nil || !strings.Contains(err.Error(), "MD5SUMS") {
		t.Errorf("run without MD5SUMS = %v; want an error naming MD5SUMS", err)
	}
	if _, _, err := run(t, want, "-out", out, "-archive", archive, "-force"); err != nil {
		t.Fatalf("-force: %v", err)
	}
	if got := listDir(t, out); !maps.Equal(got, first) {
		t.Errorf("-force did not restore %s", out)
	}
	checkNoLeftovers(t, parent, "flowers17")

	// An unrelated folder is not touched; an empty one is used.
	other := filepath.Join(parent, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, want, "-out", other, "-archive", archive); err == nil {
		t.Errorf("run on an unrelated folder = nil; want an error")
	}
	if b, err := os.ReadFile(filepath.Join(other, "notes.txt")); err != nil || string(b) != "mine" {
		t.Errorf("unrelated folder changed: %q, %v", b, err)
	}
	empty := filepath.Join(parent, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, want, "-out", empty, "-archive", archive); err != nil {
		t.Errorf("run on an empty folder = %v; want nil", err)
	}
}

func TestDownload(t *testing.T) {
	want := sumsOf(t, 1, 1360)
	tgz := makeTGZ(t, image(1), image(1360))
	mux := http.NewServeMux()
	mux.HandleFunc("/17flowers.tgz", func(w http.ResponseWriter, r *http.Request) { w.Write(tgz) })
	mux.HandleFunc("/cut.tgz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(tgz)))
		w.Write(tgz[:len(tgz)/2]) // the server closes the connection short of Content-Length
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	out := filepath.Join(t.TempDir(), "flowers17")
	stdout, stderr, err := run(t, want, "-out", out, "-url", srv.URL+"/17flowers.tgz")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "downloading "+srv.URL) || !strings.Contains(stderr, "not the published "+publishedMD5) {
		t.Errorf("stdout %q, stderr %q; want the download and a warning about the archive's md5", stdout, stderr)
	}
	if err := verifyDir(out, want); err != nil {
		t.Error(err)
	}
	// The archive's md5 as given: no warning.
	_, stderr, err = run(t, want, "-out", out, "-url", srv.URL+"/17flowers.tgz", "-force", "-archive-md5", md5hex(tgz))
	if err != nil || stderr != "" {
		t.Errorf("-archive-md5 right = %v, stderr %q; want no error, no warning", err, stderr)
	}

	// A closed port, a 404, a connection cut short: each says how to do it by hand.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/17flowers.tgz"
	l.Close()
	for _, url := range []string{closed, srv.URL + "/missing.tgz", srv.URL + "/cut.tgz"} {
		parent := t.TempDir()
		_, _, err := run(t, want, "-out", filepath.Join(parent, "flowers17"), "-url", url)
		if err == nil || !strings.Contains(err.Error(), "download "+url) || !strings.Contains(err.Error(), "-archive 17flowers.tgz") {
			t.Errorf("flowerdata -url %s = %v; want a download error that suggests -archive", url, err)
		}
		checkNoLeftovers(t, parent)
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.out != filepath.Join("data", "flowers17") || c.url != defaultURL || c.archive != "" || c.force || c.archiveMD5 != publishedMD5 {
		t.Errorf("defaults = %+v", c)
	}
	if len(c.want) != 1360 {
		t.Errorf("defaults: %d expected images; want 1360", len(c.want))
	}
	for _, args := range [][]string{{"extra"}, {"-out", "."}, {"-out", "data/.."}, {"-out", "/"}, {"-nosuchflag"}} {
		if _, err := parseFlags(args, io.Discard, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil; want an error", args)
		}
	}
	if c, err := parseFlags([]string{"-out", "data/flowers17/"}, io.Discard, io.Discard); err != nil || c.out != filepath.Join("data", "flowers17") {
		t.Errorf("parseFlags(-out data/flowers17/) = %v, %v; want out data/flowers17", c, err)
	}
}

// TestEmbeddedSums checks the embedded list: every image once, 80 per class,
// and the same as the shared dataset's MD5SUMS when that is present.
func TestEmbeddedSums(t *testing.T) {
	sums, err := parseSums(embeddedSums)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != perClass*len(classes) {
		t.Fatalf("md5sums.txt lists %d images; want %d", len(sums), perClass*len(classes))
	}
	per := map[string]int{}
	for _, s := range sums {
		c, _, _ := strings.Cut(s.path, "/")
		per[c]++
	}
	for _, c := range classes {
		if per[c] != perClass {
			t.Errorf("md5sums.txt: class %s has %d images; want %d", c, per[c], perClass)
		}
	}
	if got := string(formatSums(sums)); got != embeddedSums {
		t.Errorf("md5sums.txt is not in the order flowerdata writes MD5SUMS")
	}
	shared, err := os.ReadFile(filepath.Join(sharedDir, "MD5SUMS"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("shared dataset not at %s", sharedDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(shared) != embeddedSums {
		t.Errorf("md5sums.txt differs from %s/MD5SUMS", sharedDir)
	}
}

func TestParseSums(t *testing.T) {
	const h = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ text, want string }{
		{h + "  daffodil/image_0001.jpg\n" + h + " *pansy/image_1360.jpg\n", ""},
		{h + "  snowdrop/image_0001.jpg\n", "of class daffodil"},
		{h + "  image_0001.jpg\n", "not class/image_NNNN.jpg"},
		{h + "  pansy/image_1361.jpg\n", "no image number 1361"},
		{"0123  daffodil/image_0001.jpg\n", "not an md5"},
		{strings.ToUpper(h) + "  daffodil/image_0001.jpg\n", "not an md5"},
		{h + "daffodil/image_0001.jpg\n", "want"},
		{h + "  daffodil/image_0001.jpg\n" + h + "  daffodil/image_0001.jpg\n", "twice"},
	} {
		_, err := parseSums(tc.text)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("parseSums(%q) = %v; want an error containing %q", tc.text, err, tc.want)
		}
	}
}
