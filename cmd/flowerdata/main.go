package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

const (
	// defaultURL is the official archive, from the dataset page
	// https://www.robots.ox.ac.uk/~vgg/data/flowers/17/.
	defaultURL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
	// publishedMD5 is the md5 of 17flowers.tgz that the dataset page gives.
	publishedMD5 = "b59a65d8d1a99cd66944d474e1289eab"
)

// config is what the flags say, plus the expected md5 list (the embedded
// one; tests put a shorter one here).
type config struct {
	out        string
	url        string
	archive    string
	archiveMD5 string
	force      bool

	want   []sum
	client *http.Client
	stdout io.Writer
	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c, err := parseFlags(os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	err = c.fetch(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowerdata:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; usage errors are printed to stderr.
func parseFlags(args []string, stdout, stderr io.Writer) (*config, error) {
	want, err := parseSums(embeddedSums)
	if err != nil {
		err = fmt.Errorf("embedded md5sums.txt: %w", err) // a build error: TestEmbeddedSums catches it
		fmt.Fprintln(stderr, "flowerdata:", err)
		return nil, err
	}
	c := &config{want: want, stdout: stdout, stderr: stderr, client: defaultClient()}
	fs := flag.NewFlagSet("flowerdata", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: flowerdata [flags]\n\n"+
			"Download the Oxford 17 Flowers archive, check every image's md5 and sort\n"+
			"the images into one folder per class.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.out, "out", filepath.Join("data", "flowers17"), "folder to write, one sub-folder per class")
	fs.StringVar(&c.url, "url", defaultURL, "where to download 17flowers.tgz from")
	fs.StringVar(&c.archive, "archive", "", "a local copy of 17flowers.tgz to read instead of downloading")
	fs.StringVar(&c.archiveMD5, "archive-md5", publishedMD5, `the archive's expected md5; a mismatch is a warning, since each image is checked ("" skips it)`)
	fs.BoolVar(&c.force, "force", false, "replace -out even if it is complete, or not a copy of the dataset")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "flowerdata: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.out = filepath.Clean(c.out)
	if b := filepath.Base(c.out); b == "." || b == ".." || b == string(filepath.Separator) {
		fmt.Fprintf(stderr, "flowerdata: -out %s: name the folder to write, such as data/flowers17\n", c.out)
		return nil, fmt.Errorf("-out %s: not a folder name", c.out)
	}
	return c, nil
}

// defaultClient gives up on a server that does not answer; the body may
// take as long as it takes (interrupt to stop).
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: t}
}

// fetch makes c.out a complete, verified copy of the dataset, unless it
// already is one.
func (c *config) fetch(ctx context.Context) error {
	entries, err := os.ReadDir(c.out)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && len(entries) == 0:
		// Nothing there yet.
	case err != nil:
		return fmt.Errorf("read output folder: %w", err)
	case c.force:
		// Replaced below, once the new copy is complete.
	default:
		if err := verifyDir(c.out, c.want); err != nil {
			return fmt.Errorf("%s is not a complete, verified copy of the dataset (%v); -force replaces it", c.out, err)
		}
		fmt.Fprintf(c.stdout, "%s: all %d images present and verified; nothing to do (-force downloads again)\n", c.out, len(c.want))
		return nil
	}

	src, name, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer src.Close()

	parent := filepath.Dir(c.out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create output folder: %w", err)
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(c.out)+".tmp-")
	if err != nil {
		return fmt.Errorf("create output folder: %w", err)
	}
	defer os.RemoveAll(stage) // a no-op once it is renamed into place
	archiveMD5, err := unpack(ctx, src, stage, c.want)
	var re *readError
	if errors.As(err, &re) && c.archive == "" {
		return downloadError(c.url, re.err)
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(stage, "MD5SUMS"), formatSums(c.want), 0o644); err != nil {
		return fmt.Errorf("write MD5SUMS: %w", err)
	}
	if err := install(stage, c.out); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: %d images in %d class folders, each md5 verified; see %s\n",
		c.out, len(c.want), len(classesOf(c.want)), filepath.Join(c.out, "MD5SUMS"))
	if c.archiveMD5 != "" && archiveMD5 != c.archiveMD5 {
		fmt.Fprintf(c.stderr, "flowerdata: warning: %s has md5 %s, not the published %s; every image matched its own md5, so the images are the official ones\n",
			name, archiveMD5, c.archiveMD5)
	}
	return nil
}

// open returns the archive's bytes: the local file, or the response body.
func (c *config) open(ctx context.Context) (io.ReadCloser, string, error) {
	if c.archive != "" {
		f, err := os.Open(c.archive)
		if err != nil {
			return nil, "", fmt.Errorf("open archive: %w", err)
		}
		return f, c.archive, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("download: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, "", downloadError(c.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, "", downloadError(c.url, fmt.Errorf("HTTP %s", resp.Status))
	}
	size := "size unknown"
	if resp.ContentLength > 0 {
		size = fmt.Sprintf("%.1f MB", float64(resp.ContentLength)/1e6)
	}
	fmt.Fprintf(c.stdout, "downloading %s (%s)\n", c.url, size)
	return readCloser{&readError{r: resp.Body}, resp.Body}, c.url, nil
}

// downloadError says what failed and how to do without the download.
func downloadError(url string, err error) error {
	return fmt.Errorf("download %s: %w\n"+
		"  to do it by hand, fetch the archive elsewhere (curl -fLO URL, or a browser), copy it here and run\n"+
		"  go run ./cmd/flowerdata -archive 17flowers.tgz   (or: make data ARCHIVE=17flowers.tgz)", url, err)
}

// readError marks errors reading the download, as opposed to errors in
// what was read.
type readError struct {
	r   io.Reader
	err error
}

func (e *readError) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
		return n, e
	}
	return n, err
}

func (e *readError) Error() string { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// install renames the complete folder stage to out, replacing out.
func install(stage, out string) error {
	old := stage + ".old"
	_, err := os.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = ""
	case err != nil:
		return fmt.Errorf("install: %w", err)
	default:
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("install: move the old folder aside: %w", err)
		}
	}
	if err := os.Rename(stage, out); err != nil {
		if old != "" {
			_ = os.Rename(old, out)
		}
		return fmt.Errorf("install: %w", err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("install: remove the old folder: %w", err)
		}
	}
	return nil
}
