package boot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	cfg, err := ParseCmdline("console=ttyS0 quiet wolfpack.hostname=node2 wolfpack.disks=2 " +
		"wolfpack.if=eth0,52:54:00:12:00:02,10.99.0.12/24 wolfpack.if=eth1,52:54:00:12:01:02,10.99.1.12/24\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "node2" || cfg.Disks != 2 || cfg.Port != "/dev/ttyS1" || len(cfg.Interfaces) != 2 ||
		cfg.NodeFile != DefaultNodeFile || cfg.ConfigDev != "" {
		t.Fatalf("got %+v", cfg)
	}
	if got := cfg.Interfaces[1].String(); got != "eth1,52:54:00:12:01:02,10.99.1.12/24" {
		t.Errorf("interface 1: %s", got)
	}
	if !cfg.Has("wolfpack.if") || cfg.Has("wolfpack.port") {
		t.Errorf("Has: if %v port %v", cfg.Has("wolfpack.if"), cfg.Has("wolfpack.port"))
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"wolfpack.if=eth0,zz,10.0.0.1/8", `bad MAC "zz"`},
		{"wolfpack.if=eth0,52:54:00:12:00:02", "want name,mac,addr/len, got 2 fields"},
		{"wolfpack.if=eth0,52:54:00:12:00:02,10.0.0.1", `bad address "10.0.0.1"`},
		{"wolfpack.if=eth0,52:54:00:12:00:02,fd00::1/64", "only IPv4"},
		{"wolfpack.if=eth0,52:54:00:12:00:02,10.0.0.1/8 wolfpack.if=eth0,52:54:00:12:00:03,10.0.0.2/8", "given twice"},
		{"wolfpack.disks=two", "wolfpack.disks=two: want a count"},
		{"wolfpack.disks=-1", "want a count"},
		{"wolfpack.config=vda", "wolfpack.config=vda: want a device under /dev/"},
		{"wolfpack.node=etc/node.toml", "want an absolute path"},
		{"wolfpack.hostname=", "wolfpack.hostname=: want wolfpack.hostname=VALUE"},
		{"wolfpack.colour=blue", "unknown parameter wolfpack.colour"},
	} {
		_, err := ParseCmdline("console=ttyS0 " + tc.cmdline)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "kernel command line: ") {
			t.Errorf("%s: got %v, want an error with %q", tc.cmdline, err, tc.want)
		}
	}
}

func TestParseFileAndOver(t *testing.T) {
	file, err := ParseFile("boot.conf", []byte("# node 1\nhostname=node1\n\nwolfpack.if=eth0,52:54:00:12:00:01,10.99.0.11/24\nif=eth1,52:54:00:12:01:01,10.99.1.11/24\ndisks=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if file.Hostname != "node1" || len(file.Interfaces) != 2 || file.Disks != 1 {
		t.Fatalf("file: %+v", file)
	}
	cmd, err := ParseCmdline("console=ttyS0 wolfpack.hostname=other wolfpack.if=eth0,52:54:00:12:00:09,10.99.0.19/24")
	if err != nil {
		t.Fatal(err)
	}
	got := file.Over(cmd)
	if got.Hostname != "other" || len(got.Interfaces) != 1 || got.Interfaces[0].Addr.String() != "10.99.0.19/24" || got.Disks != 1 {
		t.Errorf("command line over file: %+v", got)
	}
	if got := file.Over(Settings{}); got.Hostname != "node1" || len(got.Interfaces) != 2 {
		t.Errorf("empty command line over file: %+v", got)
	}
	if _, err := ParseFile("boot.conf", []byte("hostname=a\nthis is not a setting\n")); err == nil || !strings.Contains(err.Error(), "boot.conf line 2: ") {
		t.Errorf("bad line: %v", err)
	}
}

func makeTar(t *testing.T, files map[string]string, extra func(*tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"./", "./node.toml", "./cluster.key", "./boot.conf"} {
		if name == "./" {
			_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		body, ok := files[strings.TrimPrefix(name, "./")]
		if !ok {
			continue
		}
		mode := int64(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	if extra != nil {
		extra(tw)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	// A raw disk: the archive, then zeros and leftovers.
	return append(buf.Bytes(), append(make([]byte, 4096), "garbage after the archive"...)...)
}

func TestConfigDisk(t *testing.T) {
	disk := makeTar(t, map[string]string{"node.toml": "node_id = 1\n", "cluster.key": "00ff\n", "boot.conf": "hostname=node1\n"}, nil)
	if !LooksLikeTar(disk[:512]) {
		t.Fatal("LooksLikeTar: false for a tar archive")
	}
	if LooksLikeTar(make([]byte, 512)) {
		t.Fatal("LooksLikeTar: true for zeros")
	}
	c, err := ReadConfig(bytes.NewReader(disk), "/dev/vda")
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings == nil || c.Settings.Hostname != "node1" || len(c.Files) != 2 {
		t.Fatalf("got %+v", c)
	}
	dir := t.TempDir()
	if err := c.Install(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "cluster.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("cluster.key: %v %v", st.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "node.toml")); string(b) != "node_id = 1\n" {
		t.Errorf("node.toml: %q", b)
	}
}

func TestConfigDiskErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		extra func(*tar.Writer)
		want  string
	}{
		{"absolute", nil, func(tw *tar.Writer) {
			_ = tw.WriteHeader(&tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg, Size: 0})
		}, `entry "/etc/passwd": want a name relative to /etc/wolfpack`},
		{"dotdot", nil, func(tw *tar.Writer) {
			_ = tw.WriteHeader(&tar.Header{Name: "../x", Typeflag: tar.TypeReg, Size: 0})
		}, `entry "../x": want a name relative`},
		{"symlink", map[string]string{"node.toml": "x"}, func(tw *tar.Writer) {
			_ = tw.WriteHeader(&tar.Header{Name: "./link", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"})
		}, `entry "./link": only regular files`},
		{"bad boot.conf", map[string]string{"boot.conf": "disks=many\n"}, nil, "boot.conf line 1: wolfpack.disks=many"},
		{"empty", nil, nil, "holds no files"},
	} {
		_, err := ReadConfig(bytes.NewReader(makeTar(t, tc.files, tc.extra)), "/dev/vda")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/dev/vda") {
			t.Errorf("%s: got %v, want an error naming /dev/vda with %q", tc.name, err, tc.want)
		}
	}
}

func TestDiskIDs(t *testing.T) {
	sys := t.TempDir()
	mk := func(name, file, content string) {
		p := filepath.Join(sys, "block", name, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("sda", "device/wwid", "naa.60000000000000000e00000000010001\n")
	mk("sdb", "device/wwid", "naa.60000000000000000e00000000010001\n") // a second path to the same LUN
	mk("sdc", "device/wwid", "t10.IET     VIRTUAL-DISK    beaf11\n")
	mk("vda", "serial", "wolfpack-config\n")
	dev := t.TempDir()
	made, err := MakeDiskLinks(sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"wwn-0x60000000000000000e00000000010001": "sda", "scsi-360000000000000000e00000000010001": "sda",
		"scsi-1IET_VIRTUAL-DISK_beaf11": "sdc", "virtio-wolfpack-config": "vda",
	}
	if len(made) != len(want) {
		t.Errorf("made %v, want %v", made, want)
	}
	for id, name := range want {
		if got, err := os.Readlink(filepath.Join(dev, "disk/by-id", id)); err != nil || got != "../../"+name {
			t.Errorf("%s -> %q (%v), want ../../%s", id, got, err, name)
		}
	}
}
