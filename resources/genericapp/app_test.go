package genericapp

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/testlog"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// Output lines are logged with the key "output"; IsAlive is the check
// command's exit status; the Watcher fires when the command exits.
func TestOutputCheckAndExit(t *testing.T) {
	var logs testlog.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil)).With("resource", "app")
	i, err := Type{}.Open("app", resources.Props{
		"command":       db.StringValue(`echo "hello $GREETING"; sleep 0.5; exit 4`),
		"environment":   db.ListValue("GREETING=world"),
		"check_command": db.StringValue(`test -n "$GREETING" && exit 3`),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	if err := i.Online(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := i.LooksAlive(); err != nil {
		t.Fatalf("LooksAlive: %v", err)
	}
	if err := i.IsAlive(t.Context()); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("IsAlive = %v; want the check's exit status 3", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"application output","resource":"app","output":"hello world","stream":"stdout"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no output line logged: %s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-i.(resources.Watcher).Failures():
		if !strings.Contains(err.Error(), "exit status 4") {
			t.Fatalf("failure %v; want exit status 4", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported when the command exited")
	}
	if err := i.LooksAlive(); err == nil {
		t.Fatal("LooksAlive after exit: nil")
	}
	// Online again after a failure starts it anew.
	if err := i.Online(context.Background()); err != nil {
		t.Fatal(err)
	}
	i.Terminate()
	if err := i.LooksAlive(); err == nil {
		t.Fatal("LooksAlive after Terminate: nil")
	}
}
