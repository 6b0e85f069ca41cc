// Command lunwriter is the fault matrix's data-LUN writer (testbed/matrix):
// it runs on every guest and, while the node has the data disk mounted at
// -mount (the node believes it owns the physical_disk resource), writes
// one 512-byte record "wpw node=N seq=S" to block -lba of -device every
// -every, with O_DIRECT, so that the write reaches the target or fails
// there. The host reads that block off the LUN's backing file: whose
// writes land, and whether a fenced node's ever do.
//
// It prints a line when the outcome changes (written, refused with the
// target's error, or not mounted), and the counts on SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	device := flag.String("device", "", "the data LUN's block device")
	lba := flag.Int64("lba", -1, "the block to write, outside the filesystem")
	node := flag.Int("node", 0, "this node's id")
	mount := flag.String("mount", "", "write only while this mount point is mounted")
	every := flag.Duration("every", 50*time.Millisecond, "interval between writes")
	flag.Parse()
	if *device == "" || *lba < 0 || *node <= 0 || *mount == "" || *every <= 0 {
		fmt.Fprintln(os.Stderr, "lunwriter: -device, -lba, -node, -mount and a positive -every are required")
		os.Exit(2)
	}
	if err := run(*device, *lba, *node, *mount, *every); err != nil {
		fmt.Fprintln(os.Stderr, "lunwriter:", err)
		os.Exit(1)
	}
}

func mounted(mount string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == mount {
			return true
		}
	}
	return false
}

func run(device string, lba int64, node int, mount string, every time.Duration) error {
	// O_DIRECT wants an aligned buffer: a page from mmap.
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("allocate buffer: %w", err)
	}
	rec := buf[:512]
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var seq, ok, refused, idle int
	last := ""
	report := func(what string) {
		if what != last {
			fmt.Printf("%s %s (seq %d)\n", time.Now().Format("15:04:05.000"), what, seq)
			last = what
		}
	}
	for {
		select {
		case <-sig:
			fmt.Printf("written=%d refused=%d idle=%d\n", ok, refused, idle)
			return nil
		case <-tick.C:
		}
		if !mounted(mount) {
			idle++
			report("not mounted")
			continue
		}
		seq++
		clear(rec)
		copy(rec, fmt.Sprintf("wpw node=%d seq=%d\n", node, seq))
		err := write(device, lba, rec)
		if err != nil {
			refused++
			report("refused: " + err.Error())
			continue
		}
		ok++
		report("writing")
	}
}

func write(device string, lba int64, rec []byte) error {
	fd, err := unix.Open(device, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n, err := unix.Pwrite(fd, rec, lba*512)
	if err != nil {
		return err
	}
	if n != len(rec) {
		return fmt.Errorf("short write: %d of %d bytes", n, len(rec))
	}
	return nil
}
