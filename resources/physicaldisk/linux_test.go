package physicaldisk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
	"golang.org/x/sys/unix"
)

func props(kv ...any) resources.Props {
	p := resources.Props{
		"device":               db.StringValue("/dev/sdz"),
		"mount_point":          db.StringValue("/srv/data"),
		resources.PropNodeID:   db.IntValue(3),
		resources.PropNodeName: db.StringValue("node3"),
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(p, kv[i].(string))
			continue
		}
		p[kv[i].(string)] = kv[i+1].(db.Value)
	}
	return p
}

func TestOpenNamesResourceAndProperty(t *testing.T) {
	for want, p := range map[string]resources.Props{
		`property device: "dev/sdz" is not an absolute path`:             props("device", db.StringValue("dev/sdz")),
		`property mount_point: "/" is not an absolute path other than /`: props("mount_point", db.StringValue("/")),
		`property fstype: "btrfs"`:                                       props("fstype", db.StringValue("btrfs")),
		`property fsck: "sometimes"`:                                     props("fsck", db.StringValue("sometimes")),
		`property mount_options: option "bind"`:                          props("mount_options", db.StringValue("noatime,bind")),
		`property scratch_lba: must be a non-negative int`:               props("scratch_lba", db.IntValue(-2)),
		`property stop_timeout_ms: must be positive`:                     props("stop_timeout_ms", db.IntValue(0)),
		`property node.id: missing`:                                      props(resources.PropNodeID, nil),
		`property node.id: node id 65 out of range`:                      props(resources.PropNodeID, db.IntValue(65)),
	} {
		_, err := Type{}.Open("data", p, nil)
		if err == nil || !strings.Contains(err.Error(), "physical_disk data: "+want) {
			t.Errorf("Open: %v; want %q", err, want)
			continue
		}
		if c := resources.ClassOf(err); c != resources.FailFatal {
			t.Errorf("Open: %v: class %v, want fatal", err, c)
		}
	}
	i, err := Type{}.Open("data", props("mount_options", db.StringValue("noatime,ro,errors=remount-ro"), "resourcetype.x", db.StringValue("y")), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := i.(*disk)
	if d.key != KeyPrefix|3 || d.fstype != "ext4" || d.fsck != "auto" || d.scratch != -1 || d.stopTimeout != DefaultStopTimeout ||
		d.flags != unix.MS_NOATIME|unix.MS_RDONLY || d.data != "errors=remount-ro" {
		t.Errorf("opened %+v", d)
	}
}

// A device that is not there, or not a block device, is a hard failure:
// another node may reach the disk.
func TestOnlineMissingDeviceIsHard(t *testing.T) {
	for _, dev := range []string{"/nonexistent/sdz", "/dev/null"} {
		i, err := Type{}.Open("data", props("device", db.StringValue(dev), "mount_point", db.StringValue(t.TempDir())), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = i.Online(context.Background())
		if err == nil || resources.ClassOf(err) != resources.FailHard || !strings.Contains(err.Error(), dev) {
			t.Errorf("Online with device %s: %v (class %v), want a hard error naming it", dev, err, resources.ClassOf(err))
		}
		if err := i.LooksAlive(); resources.ClassOf(err) != resources.FailHard {
			t.Errorf("LooksAlive with device %s: %v, want hard", dev, err)
		}
		i.Terminate()
		i.Close()
	}
}

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		in    string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"defaults", 0, ""},
		{"ro,noatime,nodev,nosuid", unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID, ""},
		{"ro,rw", 0, ""},
		{"noexec, data=journal ,barrier=1,sync", unix.MS_NOEXEC | unix.MS_SYNCHRONOUS, "data=journal,barrier=1"},
	} {
		flags, data, err := parseMountOptions(tc.in)
		if err != nil || flags != tc.flags || data != tc.data {
			t.Errorf("parseMountOptions(%q) = %#x, %q, %v; want %#x, %q", tc.in, flags, data, err, tc.flags, tc.data)
		}
	}
	if _, _, err := parseMountOptions("remount,ro"); err == nil {
		t.Error("remount accepted")
	}
}

func TestFsckError(t *testing.T) {
	for status, want := range map[int]struct {
		ok    bool
		class resources.FailureClass
	}{
		0: {ok: true}, 1: {ok: true}, 2: {ok: true}, 3: {ok: true},
		4: {class: resources.FailFatal}, 12: {class: resources.FailFatal},
		8: {class: resources.FailHard}, 128: {class: resources.FailHard},
		16: {class: resources.FailFatal}, 32: {class: resources.FailSoft},
	} {
		err := fsckError("fsck.ext4", status)
		if (err == nil) != want.ok || err != nil && resources.ClassOf(err) != want.class {
			t.Errorf("fsckError(%d) = %v (class %v), want ok %v class %v", status, err, resources.ClassOf(err), want.ok, want.class)
		}
	}
}

func TestMountedOnAndUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b\134c\01`); got != `/mnt/a b\c\01` {
		t.Errorf("unescape = %q", got)
	}
	m, ok, err := mountedOn("/proc")
	if err != nil || !ok || m.fstype != "proc" {
		t.Errorf("mountedOn(/proc) = %+v, %v, %v", m, ok, err)
	}
	dir := t.TempDir()
	if _, ok, err := mountedOn(dir); ok || err != nil {
		t.Errorf("mountedOn(%s) = %v, %v: a plain directory", dir, ok, err)
	}
	// A mount point reached through a symbolic link.
	link := filepath.Join(dir, "proc")
	if err := os.Symlink("/proc", link); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := mountedOn(link); err != nil || !ok || m.fstype != "proc" {
		t.Errorf("mountedOn(%s) = %+v, %v, %v", link, m, ok, err)
	}
}

type holder struct {
	pid    int
	exited chan error // Wait's result
}

// startHolder starts a process whose working directory is dir, which also
// holds a file under dir open, and returns it (killed at the end).
func startHolder(t *testing.T, dir string) holder {
	t.Helper()
	cmd := exec.Command("sh", "-c", "exec 3>held; exec sleep 600")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := holder{pid: cmd.Process.Pid, exited: make(chan error, 1)}
	go func() { h.exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Wait until the shell has become sleep with the file open.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, err := os.Readlink("/proc/" + strconv.Itoa(h.pid) + "/fd/3"); err == nil && strings.HasSuffix(p, "/held") {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatal("holder did not open its file")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded
	}
}

func TestHoldersFindsCwdAndFiles(t *testing.T) {
	dir := t.TempDir()
	inside := filepath.Join(dir, "sub")
	if err := os.Mkdir(inside, 0o755); err != nil {
		t.Fatal(err)
	}
	h := startHolder(t, inside)
	other := startHolder(t, t.TempDir())
	got := holders(dir)
	if !slices.Contains(got, h.pid) {
		t.Errorf("holders(%s) = %v, want %d among them", dir, got, h.pid)
	}
	if slices.Contains(got, other.pid) || slices.Contains(got, os.Getpid()) {
		t.Errorf("holders(%s) = %v: has %d (elsewhere) or this process", dir, got, other.pid)
	}
	if !under(dir+"/x (deleted)", dir) || under(dir+"x", dir) {
		t.Error("under")
	}
}

// On a real tmpfs: a busy filesystem is unmounted after stop_timeout_ms by
// killing its holder (Offline), and at once by Terminate.
func TestIntegrationUnmountKillsHolders(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	for _, grace := range []bool{true, false} {
		mp := t.TempDir()
		source := "/wolfpack-physicaldisk-test-" + filepath.Base(filepath.Dir(mp))
		if err := unix.Mount(source, mp, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })
		i, err := Type{}.Open("data", props("device", db.StringValue(source), "mount_point", db.StringValue(mp), "stop_timeout_ms", db.IntValue(300)), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := startHolder(t, mp)
		t0 := time.Now()
		err = i.(*disk).unmount(context.Background(), grace)
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("grace %v: unmount: %v", grace, err)
		}
		if _, ok, _ := mountedOn(mp); ok {
			t.Errorf("grace %v: still mounted", grace)
		}
		select {
		case err := <-h.exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("grace %v: holder ended with %v, want SIGKILL", grace, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("grace %v: holder still running", grace)
		}
		if grace && took < 300*time.Millisecond || !grace && took > 250*time.Millisecond {
			t.Errorf("grace %v: unmounted after %v (stop_timeout_ms 300)", grace, took)
		}
		t.Logf("grace %v: unmounted in %v", grace, took.Round(time.Millisecond))
	}
}
