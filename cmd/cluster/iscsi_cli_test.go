package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
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
