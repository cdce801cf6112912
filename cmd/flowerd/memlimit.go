package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitFraction is the share of the machine's (or the container's)
// memory that the Go collector is told to stay under when GOMEMLIMIT is
// unset. Nearly all of flowerd's memory is Go heap (weights, momentum,
// activations and the backend's scratch buffers), and with GOGC alone the
// heap may grow to twice what is live before a collection: a model1
// training job at batch 64 took the study server to 17.7 GB resident with
// no limit and 12.2 GB under GOMEMLIMIT=8GiB (epochs about 8% slower). The
// limit makes the collector run before the kernel's OOM killer would; a
// quarter is left for what the Go runtime does not count: Badger's memory
// maps, and on the xla backend the PJRT plugin's own allocations.
const memoryLimitFraction = 0.75

// setMemoryLimit gives the Go collector a soft memory limit: GOMEMLIMIT
// when set (the runtime has applied it already), otherwise
// memoryLimitFraction of the smaller of the cgroup's limit and the
// machine's memory. It returns the limit in force and where it came from;
// it changes nothing if the memory cannot be read.
func setMemoryLimit(root string) (int64, string) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT=" + v
	}
	total, from, err := availableMemory(root)
	if err != nil {
		return debug.SetMemoryLimit(-1), "none (" + err.Error() + ")"
	}
	limit := int64(float64(total) * memoryLimitFraction)
	debug.SetMemoryLimit(limit)
	return limit, fmt.Sprintf("%.0f%% of %s (%.1f GiB)", memoryLimitFraction*100, from, float64(total)/(1<<30))
}

// availableMemory returns the memory flowerd may use, read under root ("/"
// outside tests): the cgroup v2 or v1 limit when one is set, or else the
// machine's MemTotal.
func availableMemory(root string) (uint64, string, error) {
	total, err := memTotal(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, "", err
	}
	for _, f := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		limit, ok, err := cgroupLimit(filepath.Join(root, f))
		if err != nil {
			return 0, "", err
		}
		if ok && limit < total {
			return limit, "the cgroup's memory limit", nil
		}
	}
	return total, "the machine's memory", nil
}

// memTotal reads MemTotal from a /proc/meminfo file, in bytes.
func memTotal(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemTotal %q: %w", path, fields[1], err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no MemTotal line", path)
}

// cgroupLimit reads a cgroup memory limit file. ok is false when the file
// is absent or says there is no limit ("max" in v2, a huge number in v1).
func cgroupLimit(path string) (limit uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a byte count", path, s)
	}
	if n == 0 || n >= math.MaxInt64/2 { // v1's "unlimited" is a page-rounded MaxInt64
		return 0, false, nil
	}
	return n, true, nil
}
