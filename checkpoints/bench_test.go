package checkpoints

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkModel1 writes and reads a model1-sized state (700 MB: weights
// plus optimizer velocities) with the default options, and reports the peak
// Go heap above the store's idle level and the process's anonymous resident
// memory afterwards. (Total RSS also counts the value-log pages Badger has
// mapped, which are page cache the kernel can drop, so it is not reported.)
//
//	go test -run '^$' -bench Model1 -benchtime 2x ./checkpoints/
func BenchmarkModel1(b *testing.B) {
	const size = 700 << 20
	s, err := Open(b.TempDir(), Options{KeepVersions: 1, GCInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var m Manifest
	b.Run("write", func(b *testing.B) {
		b.SetBytes(size)
		var peak uint64
		for b.Loop() {
			peak = max(peak, peakHeap(func() { m = save(b, s, "model1", 1, size, Meta{}) }))
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(rssMiB("RssAnon"), "rss-anon-MiB")
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(size)
		var peak uint64
		for b.Loop() {
			peak = max(peak, peakHeap(func() {
				r, err := s.OpenVersion("model1", m.Version)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}))
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(rssMiB("RssAnon"), "rss-anon-MiB")
	})
}

// rssMiB reads a field (RssAnon, VmHWM...) of /proc/self/status, in MiB; 0
// where there is no /proc.
func rssMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
