package genericapp

import (
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

func TestOpenNamesResourceAndProperty(t *testing.T) {
	for want, props := range map[string]resources.Props{
		"property command: required":                          {},
		"property directory: \"rel\" is not an absolute path": {"command": db.StringValue("true"), "directory": db.StringValue("rel")},
		"property directory: stat /nonexistent":               {"command": db.StringValue("true"), "directory": db.StringValue("/nonexistent")},
		"property environment: \"NOEQUALS\"":                  {"command": db.StringValue("true"), "environment": db.ListValue("A=1", "NOEQUALS")},
		"property user: user: unknown user":                   {"command": db.StringValue("true"), "user": db.StringValue("no-such-user-wp")},
		"property stop_timeout_ms: must be positive":          {"command": db.StringValue("true"), "stop_timeout_ms": db.IntValue(0)},
	} {
		_, err := Type{}.Open("app", props, nil)
		if err == nil || !strings.Contains(err.Error(), "generic_application app: "+want) {
			t.Errorf("Open(%v) = %v; want %q", props, err, want)
		}
	}
	i, err := Type{}.Open("app", resources.Props{"command": db.StringValue("true"), "environment": db.ListValue("A=1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env := i.(*app).env; len(env) != 2 || env[0] != BasePath || env[1] != "A=1" {
		t.Fatalf("environment %v", env)
	}
}
