package clustercli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
)

func TestParseInitiatorNameFile(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"## DO NOT EDIT\nInitiatorName=iqn.1993-08.org.debian:01:abc123\n", "iqn.1993-08.org.debian:01:abc123"},
		{"#InitiatorName=iqn.2024-01.x:commented\n", ""},
		{"InitiatorName= iqn.2024-01.x:spaces \n", "iqn.2024-01.x:spaces"},
		{"InitiatorName=Not An IQN\n", ""},
		{"", ""},
	} {
		if got := parseInitiatorNameFile(c.in); got != c.want {
			t.Errorf("parseInitiatorNameFile(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHostInitiatorName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"node1", "iqn.2024-01.dev.wolfpack:node1"},
		{"Node_1.example", "iqn.2024-01.dev.wolfpack:node-1.example"},
		{"", "iqn.2024-01.dev.wolfpack:localhost"},
	} {
		got := hostInitiatorName(c.in)
		if got != c.want {
			t.Errorf("hostInitiatorName(%q) = %q, want %q", c.in, got, c.want)
		}
		if err := iscsi.ValidateName(got); err != nil {
			t.Errorf("hostInitiatorName(%q) = %q: %v", c.in, got, err)
		}
	}
	if err := iscsi.ValidateName(defaultInitiatorName()); err != nil {
		t.Errorf("defaultInitiatorName() = %q: %v", defaultInitiatorName(), err)
	}
}

func TestOpenDeviceISCSI(t *testing.T) {
	d, err := openDevice("iscsi://127.0.0.1:3260/iqn.2024-01.org.example:quorum/1")
	if err != nil {
		t.Fatal(err)
	}
	id, ok := d.(*iscsiDevice)
	if !ok {
		t.Fatalf("openDevice returned %T", d)
	}
	if err := d.Close(); err != nil { // never logged in: nothing to do
		t.Fatal(err)
	}
	if id.cfg.InitiatorName != defaultInitiatorName() {
		t.Fatalf("initiator name %q, want the default %q", id.cfg.InitiatorName, defaultInitiatorName())
	}
	for _, bad := range []string{"iscsi://127.0.0.1/no-lun", "iscsi://user:pw@127.0.0.1/iqn.2024-01.x:y/1", "nbd://x"} {
		if _, err := openDevice(bad); err == nil {
			t.Errorf("openDevice(%q) succeeded", bad)
		}
	}
}

func TestInitiatorNameFlag(t *testing.T) {
	ctx := context.Background()
	var dev *iscsiDevice
	open := func(addr string) (scsi.Device, error) {
		d, err := openDevice(addr)
		if id, ok := d.(*iscsiDevice); ok {
			dev = id
			id.addr.Portal = "127.0.0.1:1" // nothing listens: the action fails after the flag is applied
		}
		return d, err
	}
	var out, errb bytes.Buffer
	err := run(ctx, []string{"disk", "keys", "--timeout", "2s", "--initiator-name", "iqn.2024-01.dev.wolfpack:flag", "iscsi://127.0.0.1:3260/iqn.2024-01.org.example:quorum/1"}, &out, &errb, open)
	if err == nil || dev == nil || dev.cfg.InitiatorName != "iqn.2024-01.dev.wolfpack:flag" || !strings.Contains(err.Error(), "as iqn.2024-01.dev.wolfpack:flag") {
		t.Fatalf("keys with --initiator-name: err %v, device %+v", err, dev)
	}
	var ue usageError
	for _, args := range [][]string{
		{"disk", "keys", "--initiator-name", "iqn.2024-01.dev.wolfpack:flag", "/dev/sg0"},
		{"disk", "keys", "--initiator-name", "Bad Name", "iscsi://127.0.0.1/iqn.2024-01.x:y/1"},
	} {
		if err := run(ctx, args, &out, &errb, open); !errors.As(err, &ue) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

// TestIntegrationISCSIDeviceURL runs `cluster quorum`, `cluster disk` and
// `cluster log --device` on an iscsi:// URL against a real tgtd LUN
// on loopback, through the real opener, with --initiator-name: the quorum
// disk formatted and shown over iSCSI, the disk's identity and keys read.
func TestIntegrationISCSIDeviceURL(t *testing.T) {
	tg := iscsitest.Start(t, iscsitest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := tg.Addr(1)
	const ini = "iqn.2024-01.dev.wolfpack:device-url"
	for _, args := range [][]string{
		{"quorum", "format", "--cluster-tag", "5eed", "--initiator-name", ini, url},
		{"quorum", "show", url, "--initiator-name", ini, "--json"},
		{"quorum", "replay", "--initiator-name", ini, url},
		{"log", "--device", url, "--initiator-name", ini},
		{"disk", "show", "--initiator-name", ini, url},
		{"disk", "keys", "--json", url},
	} {
		var out, errb bytes.Buffer
		if err := run(ctx, args, &out, &errb, openDevice); err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, out.String(), errb.String())
		}
		s := out.String()
		switch args[1] {
		case "format":
			if !strings.Contains(s, url+": formatted quorum disk") || !strings.Contains(s, "tag 0x00005eed") {
				t.Errorf("%v:\n%s", args, s)
			}
		case "show":
			if args[0] == "quorum" && !strings.Contains(s, `"cluster_tag": "0x00005eed"`) {
				t.Errorf("%v:\n%s", args, s)
			}
			if args[0] == "disk" && !strings.Contains(s, "capacity") {
				t.Errorf("%v:\n%s", args, s)
			}
		case "--device":
			if !strings.Contains(s, "checkpoint #1 at LSN 0") {
				t.Errorf("%v:\n%s", args, s)
			}
		}
	}
}

// TestBadDevice: every command that takes a LUN refuses a bad DEVICE with
// the same text and exit status 2, before it opens anything.
func TestBadDevice(t *testing.T) {
	for _, dev := range []string{"nbd://x", "iscsi://127.0.0.1/no-lun", "sdb"} {
		var want string
		for _, cmd := range [][]string{{"disk", "keys", dev}, {"quorum", "show", dev}, {"log", "--device", dev}} {
			var out, errb bytes.Buffer
			err := run(context.Background(), cmd, &out, &errb, openDevice)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%v: err %v, want a usage error", cmd, err)
			}
			_, text, _ := strings.Cut(err.Error(), ": DEVICE ")
			if text == "" || (want != "" && text != want) {
				t.Errorf("%v: %q, want DEVICE %q", cmd, err, want)
			}
			want = text
		}
	}
}
