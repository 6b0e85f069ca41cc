package scsi

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeDevice is a hand-written Device: it records every command and answers
// from a script, then with GOOD. answer, if set, computes the reply instead.
type fakeDevice struct {
	mu      sync.Mutex
	cmds    []Command // copies: CDB, and Data for DirToDevice
	script  []fakeReply
	answer  func(cmd *Command) fakeReply
	closed  bool
	execute int
}

type fakeReply struct {
	resp Response
	data []byte // copied into Command.Data for DirFromDevice
	err  error
}

func (d *fakeDevice) Execute(ctx context.Context, cmd *Command) (Response, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.execute++
	rec := Command{CDB: bytes.Clone(cmd.CDB), Dir: cmd.Dir, Timeout: cmd.Timeout}
	if cmd.Dir == DirToDevice {
		rec.Data = bytes.Clone(cmd.Data)
	}
	d.cmds = append(d.cmds, rec)
	var r fakeReply
	switch {
	case len(d.script) > 0:
		r, d.script = d.script[0], d.script[1:]
	case d.answer != nil:
		r = d.answer(cmd)
	}
	if r.err != nil {
		return Response{}, r.err
	}
	if cmd.Dir == DirFromDevice {
		n := copy(cmd.Data, r.data)
		if r.resp.Residual == 0 {
			r.resp.Residual = len(cmd.Data) - n
		}
	}
	return r.resp, nil
}

func (d *fakeDevice) Close() error { d.closed = true; return nil }

// checkCondition is a CHECK CONDITION reply with fixed-format sense.
func checkCondition(key SenseKey, asc, ascq uint8) fakeReply {
	s, _ := Sense{Key: key, ASC: asc, ASCQ: ascq}.MarshalBinary()
	return fakeReply{resp: Response{Status: StatusCheckCondition, Sense: s}}
}

func unitAttentions(n int) []fakeReply {
	var rs []fakeReply
	for range n {
		rs = append(rs, checkCondition(SenseUnitAttention, 0x29, 0x00))
	}
	return rs
}

// Reference: SAM-5 5.14 (a command completed with UNIT ATTENTION was not
// processed; the initiator may re-issue it).
func TestRunUnitAttentionRetry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      Options
		uas       int
		wantCalls int
		wantUA    bool // the call ends with the UNIT ATTENTION error
	}{
		{name: "no UA", uas: 0, wantCalls: 1},
		{name: "two UAs then GOOD", uas: 2, wantCalls: 3},
		{name: "UAs up to the bound", uas: MaxUnitAttentionRetries, wantCalls: MaxUnitAttentionRetries + 1},
		{name: "UAs past the bound", uas: MaxUnitAttentionRetries + 1, wantCalls: MaxUnitAttentionRetries + 1, wantUA: true},
		{name: "custom bound", opts: Options{UnitAttentionRetries: 2}, uas: 5, wantCalls: 3, wantUA: true},
		{name: "retries disabled", opts: Options{UnitAttentionRetries: -1}, uas: 1, wantCalls: 1, wantUA: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDevice{script: unitAttentions(tc.uas)}
			seen := 0
			tc.opts.OnUnitAttention = func(e *SenseError) {
				seen++
				if e.ASC != 0x29 || e.Op != "TEST UNIT READY" {
					t.Errorf("OnUnitAttention got %v", e)
				}
			}
			_, err := tc.opts.Run(t.Context(), d, "TEST UNIT READY", &Command{CDB: TestUnitReadyCDB()})
			if d.execute != tc.wantCalls {
				t.Errorf("Execute called %d times, want %d", d.execute, tc.wantCalls)
			}
			if seen != tc.wantCalls-1 {
				t.Errorf("OnUnitAttention called %d times, want %d", seen, tc.wantCalls-1)
			}
			if got := errors.Is(err, ErrUnitAttention); got != tc.wantUA {
				t.Fatalf("err = %v, want unit attention: %v", err, tc.wantUA)
			}
			if !tc.wantUA && err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	transport := errors.New("link down")
	for _, tc := range []struct {
		name      string
		reply     fakeReply
		sentinel  error
		wantCalls int
		wantMsg   string
	}{
		{"reservation conflict", fakeReply{resp: Response{Status: StatusReservationConflict}}, ErrReservationConflict, 1,
			"PERSISTENT RESERVE OUT (PREEMPT): RESERVATION CONFLICT"},
		{"not ready", checkCondition(SenseNotReady, 0x04, 0x01), ErrNotReady, 1,
			"CHECK CONDITION, NOT READY, ASC/ASCQ 04/01 (logical unit is in process of becoming ready)"},
		{"illegal request", checkCondition(SenseIllegalRequest, 0x24, 0x00), ErrIllegalRequest, 1, "invalid field in cdb"},
		{"busy", fakeReply{resp: Response{Status: StatusBusy}}, ErrBusy, 1, "BUSY"},
		{"transport", fakeReply{err: transport}, transport, 1, "PERSISTENT RESERVE OUT (PREEMPT): link down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDevice{script: []fakeReply{tc.reply}}
			_, err := Run(t.Context(), d, "PERSISTENT RESERVE OUT (PREEMPT)", &Command{CDB: PROUTCDB(PROUTPreempt, 5, 24)})
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to contain %q", err, tc.wantMsg)
			}
			if d.execute != tc.wantCalls {
				t.Errorf("Execute called %d times, want %d", d.execute, tc.wantCalls)
			}
		})
	}
}

func TestRunUndecodableSense(t *testing.T) {
	d := &fakeDevice{script: []fakeReply{{resp: Response{Status: StatusCheckCondition, Sense: []byte{0x7f, 1, 2}}}}}
	_, err := Run(t.Context(), d, "INQUIRY", &Command{CDB: InquiryCDB(false, 0, 36)})
	var se *SenseError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SenseError", err)
	}
	if se.Key != 0 || !bytes.Equal(se.Sense, []byte{0x7f, 1, 2}) || se.Status != StatusCheckCondition {
		t.Errorf("got %+v", se)
	}
}

func TestRunDeferredUnitAttentionIsNotRetried(t *testing.T) {
	s, _ := Sense{Key: SenseUnitAttention, ASC: 0x29, Deferred: true}.MarshalBinary()
	d := &fakeDevice{script: []fakeReply{{resp: Response{Status: StatusCheckCondition, Sense: s}}}}
	_, err := Run(t.Context(), d, "WRITE(16)", &Command{CDB: Write16CDB(0, 0, true)})
	var se *SenseError
	if !errors.As(err, &se) || !se.Deferred || d.execute != 1 {
		t.Fatalf("err = %v (%+v), %d calls; want one deferred error", err, se, d.execute)
	}
}

func TestRunStopsRetryingWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	d := &fakeDevice{script: unitAttentions(5)}
	_, err := Options{OnUnitAttention: func(*SenseError) { cancel() }}.Run(ctx, d, "TEST UNIT READY", &Command{CDB: TestUnitReadyCDB()})
	if !errors.Is(err, context.Canceled) || d.execute != 1 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, d.execute)
	}
}

// A UNIT ATTENTION reporting preempted registrations reaches the hook, so a
// node learns it was fenced even though the command itself is retried.
func TestRunReportsReservationUnitAttentions(t *testing.T) {
	d := &fakeDevice{script: []fakeReply{checkCondition(SenseUnitAttention, 0x2a, 0x05)}}
	var got []string
	_, err := Options{OnUnitAttention: func(e *SenseError) { got = append(got, e.Error()) }}.
		Run(t.Context(), d, "READ(16)", &Command{CDB: Read16CDB(0, 1, false), Dir: DirFromDevice, Data: make([]byte, 512)})
	if err != nil {
		t.Fatal(err)
	}
	want := "READ(16): CHECK CONDITION, UNIT ATTENTION, ASC/ASCQ 2a/05 (registrations preempted)"
	if len(got) != 1 || got[0] != want {
		t.Errorf("hook saw %q, want [%q]", got, want)
	}
}
