package netname

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

func TestOpenNamesResourceAndProperty(t *testing.T) {
	for want, props := range map[string]resources.Props{
		"property name: required":                {"addresses": db.ListValue("10.0.0.1"), "interface": db.StringValue("lo")},
		"property name: \"bad_name\" is not":     {"name": db.StringValue("bad_name"), "addresses": db.ListValue("10.0.0.1")},
		"property addresses: none":               {"name": db.StringValue("vs1"), "interface": db.StringValue("lo")},
		"property interface: required":           {"name": db.StringValue("vs1"), "addresses": db.ListValue("10.0.0.1")},
		"property mode: \"x\"":                   {"name": db.StringValue("vs1"), "addresses": db.ListValue("10.0.0.1"), "mode": db.StringValue("x")},
		"property dns_server: required":          {"name": db.StringValue("vs1"), "addresses": db.ListValue("10.0.0.1"), "mode": db.StringValue("dns")},
		"property tsig_key_file: open /nonexist": {"name": db.StringValue("vs1"), "addresses": db.ListValue("10.0.0.1"), "mode": db.StringValue("dns"), "dns_server": db.StringValue("10.0.0.53"), "dns_zone": db.StringValue("example.test"), "tsig_key_file": db.StringValue("/nonexistent")},
	} {
		_, err := Type{}.Open("nn", props, nil)
		if err == nil || !strings.Contains(err.Error(), "network_name nn: "+want) {
			t.Errorf("Open(%v) = %v; want %q", props, err, want)
		}
	}
}

func TestReadKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	os.WriteFile(p, []byte("key \"wolfpack-key\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2VjcmV0\";\n};\n"), 0o600)
	k, err := ReadKeyFile(p)
	if err != nil || k.Name != "wolfpack-key" || k.Algorithm != "hmac-sha512" || k.Secret != "c2VjcmV0" {
		t.Fatalf("ReadKeyFile = %+v, %v", k, err)
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, err := ReadKeyFile(p); err == nil {
		t.Fatal("garbage key file accepted")
	}
}
