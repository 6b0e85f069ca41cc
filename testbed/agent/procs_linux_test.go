package agent

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	p, err := parseStat(42, "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0\n")
	if err != nil || p != (Proc{Pid: 42, PPid: 7, Comm: "a) b (c)", State: "S"}) {
		t.Errorf("parseStat = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "42 a S 1", "42 (a) S", "42 (a) S x"} {
		if _, err := parseStat(42, bad); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestListProcs(t *testing.T) {
	procs, err := ListProcs("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Pid == os.Getpid() {
			if p.PPid != os.Getppid() || p.State != "R" && p.State != "S" {
				t.Errorf("this process: %+v, want parent %d, running", p, os.Getppid())
			}
			return
		}
	}
	t.Errorf("this process (%d) is not among %d", os.Getpid(), len(procs))
}
