package boot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventLen)
	binary.NativeEndian.PutUint64(b[0:], 1700000000) // tv_sec
	binary.NativeEndian.PutUint64(b[8:], 5)          // tv_usec
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

// TestReadKeyPresses: only a press (value 1) of the power key counts: not
// its release or repeat, another key, or a sync event; a torn last record
// ends the read with an error.
func TestReadKeyPresses(t *testing.T) {
	var in bytes.Buffer
	for _, ev := range [][]byte{
		inputEvent(evKey, keyPower, 1), inputEvent(0, 0, 0), // press, SYN_REPORT
		inputEvent(evKey, keyPower, 0), inputEvent(evKey, keyPower, 2), // release, repeat
		inputEvent(evKey, 28, 1),   // Enter
		inputEvent(2, keyPower, 1), // EV_REL, same code
		inputEvent(evKey, keyPower, 1),
	} {
		in.Write(ev)
	}
	in.Write(inputEvent(evKey, keyPower, 1)[:10])
	presses := 0
	err := readKeyPresses(&in, keyPower, func() { presses++ })
	if presses != 2 {
		t.Errorf("%d presses, want 2", presses)
	}
	if err == nil {
		t.Error("a torn record: no error")
	}
}

// TestPowerButtons finds the event devices sysfs names "Power Button" and
// skips the others.
func TestPowerButtons(t *testing.T) {
	sys := t.TempDir()
	for ev, name := range map[string]string{"event0": "Power Button\n", "event1": "AT Translated Set 2 keyboard\n", "event2": "Power Button\n", "event3": "Sleep Button\n"} {
		d := filepath.Join(sys, "class/input", ev, "device")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "name"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := PowerButtons(sys, "/dev")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/input/event0", "/dev/input/event2"}; !slices.Equal(got, want) {
		t.Errorf("PowerButtons = %q, want %q", got, want)
	}
}

// TestSignalAction: the commands' signals come back as their actions, and
// a signal init does not read for a shutdown is none.
func TestSignalAction(t *testing.T) {
	for _, a := range []Action{PowerOff, Reboot, Halt} {
		if got, ok := SignalAction(ActionSignal(a)); !ok || got != a {
			t.Errorf("SignalAction(ActionSignal(%v)) = %v, %v", a, got, ok)
		}
	}
	for sig, want := range map[unix.Signal]Action{unix.SIGPWR: PowerOff, unix.SIGINT: Reboot} {
		if got, ok := SignalAction(sig); !ok || got != want {
			t.Errorf("SignalAction(%v) = %v, %v; want %v", sig, got, ok, want)
		}
	}
	if _, ok := SignalAction(unix.SIGHUP); ok {
		t.Error("SIGHUP asks for a shutdown")
	}
	for _, sig := range ShutdownSignals {
		if _, ok := SignalAction(sig); !ok {
			t.Errorf("ShutdownSignals holds %v, which SignalAction does not map", sig)
		}
	}
}
