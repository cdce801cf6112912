package main

import (
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("FLOWERD_ADDR", "127.0.0.1:6000")
	t.Setenv("FLOWERD_SPLIT", "6,2,2")
	t.Setenv("FLOWERD_SHUTDOWN_TIMEOUT", "5s")
	c, err := parseFlags([]string{"-data-dir", "/tmp/x"})
	if err != nil {
		t.Fatalf("parseFlags = %v", err)
	}
	if c.addr != "127.0.0.1:6000" || c.dataDir != "/tmp/x" || c.split != [3]int{6, 2, 2} || c.shutdownTimeout != 5*time.Second {
		t.Errorf("parseFlags = %+v; want the env's address, split and timeout and the flag's data dir", c)
	}
	c, err = parseFlags([]string{"-addr", "localhost:7000"})
	if err != nil || c.addr != "localhost:7000" {
		t.Errorf("parseFlags(-addr) = %+v, %v; want the flag to win over the environment", c, err)
	}
	for _, bad := range [][]string{{"-split", "1,2"}, {"-split", "a,b,c"}, {"-split", "1,-2,3"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) = nil error; want one", bad)
		}
	}
}
