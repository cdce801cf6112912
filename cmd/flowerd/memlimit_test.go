package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// fakeRoot writes files (path under root -> contents) into a temporary
// root for availableMemory.
func fakeRoot(t *testing.T, files map[string]string) string {
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestAvailableMemory(t *testing.T) {
	const meminfo = "MemFree:         1000 kB\nMemTotal:       24684092 kB\n"
	const machine = 24684092 << 10
	tests := []struct {
		name    string
		files   map[string]string
		want    uint64
		from    string
		wantErr bool
	}{
		{"machine only", map[string]string{"proc/meminfo": meminfo}, machine, "the machine's memory", false},
		{"cgroup v2 limit", map[string]string{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": "8589934592\n"},
			8 << 30, "the cgroup's memory limit", false},
		{"cgroup v2 unlimited", map[string]string{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": "max\n"},
			machine, "the machine's memory", false},
		{"cgroup v1 unlimited", map[string]string{"proc/meminfo": meminfo,
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, machine, "the machine's memory", false},
		{"cgroup v1 limit", map[string]string{"proc/meminfo": meminfo,
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "4294967296"}, 4 << 30, "the cgroup's memory limit", false},
		{"cgroup above the machine", map[string]string{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": "107374182400"},
			machine, "the machine's memory", false},
		{"no meminfo", map[string]string{}, 0, "", true},
		{"garbled cgroup", map[string]string{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": "lots"}, 0, "", true},
		{"no MemTotal", map[string]string{"proc/meminfo": "MemFree: 1 kB\n"}, 0, "", true},
	}
	for _, tc := range tests {
		got, from, err := availableMemory(fakeRoot(t, tc.files))
		if (err != nil) != tc.wantErr || got != tc.want || from != tc.from {
			t.Errorf("%s: availableMemory = %d, %q, %v; want %d, %q, error %v", tc.name, got, from, err, tc.want, tc.from, tc.wantErr)
		}
	}
}

func TestSetMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	t.Setenv("GOMEMLIMIT", "")
	root := fakeRoot(t, map[string]string{"proc/meminfo": "MemTotal: 4194304 kB\n"}) // 4 GiB
	limit, from := setMemoryLimit(root)
	if limit != 3<<30 {
		t.Errorf("setMemoryLimit on a 4 GiB machine = %d (%s); want 3 GiB", limit, from)
	}
	// GOMEMLIMIT set: the runtime's value (here the one just set) stands
	// and is reported.
	t.Setenv("GOMEMLIMIT", "1GiB")
	if got, from := setMemoryLimit(root); from != "GOMEMLIMIT=1GiB" || got != 3<<30 || debug.SetMemoryLimit(-1) != 3<<30 {
		t.Errorf("setMemoryLimit with GOMEMLIMIT set = %d, %q; want the limit in force (3 GiB) left alone and GOMEMLIMIT named", got, from)
	}
	// Unreadable memory: no limit is set, and the reason is given.
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	if got, from := setMemoryLimit(t.TempDir()); got != before || from == "" {
		t.Errorf("setMemoryLimit without /proc/meminfo = %d, %q; want the limit unchanged (%d) and a reason", got, from, before)
	}
}
