package scsi

import (
	"context"
	"fmt"
)

// MaxUnitAttentionRetries bounds how often Run re-issues a command that
// completed with UNIT ATTENTION.
const MaxUnitAttentionRetries = 8

// Options tunes Run. The zero value retries UNIT ATTENTION up to
// MaxUnitAttentionRetries times and reports nothing.
type Options struct {
	// UnitAttentionRetries bounds the retries: zero means
	// MaxUnitAttentionRetries, a negative value means none.
	UnitAttentionRetries int
	// OnUnitAttention, if not nil, is called with every UNIT ATTENTION a
	// retry absorbs. Some carry news the caller must not miss, such as
	// 2a/03 RESERVATIONS PREEMPTED or 2a/05 REGISTRATIONS PREEMPTED.
	OnUnitAttention func(*SenseError)
}

// Run executes cmd on dev with the zero Options; see Options.Run.
func Run(ctx context.Context, dev Device, op string, cmd *Command) (Response, error) {
	return Options{}.Run(ctx, dev, op, cmd)
}

// Run executes cmd on dev. A status other than GOOD becomes a *SenseError
// named op (see CheckResponse); a transport error is wrapped with op.
//
// A command that completes with UNIT ATTENTION was not executed (SAM-5
// 5.14), so Run re-issues it, whatever the command, up to the retry bound;
// after that it returns the UNIT ATTENTION error. Response is the last one
// the device returned.
func (o Options) Run(ctx context.Context, dev Device, op string, cmd *Command) (Response, error) {
	limit := o.UnitAttentionRetries
	switch {
	case limit == 0:
		limit = MaxUnitAttentionRetries
	case limit < 0:
		limit = 0
	}
	for retry := 0; ; retry++ {
		resp, err := dev.Execute(ctx, cmd)
		if err != nil {
			return resp, fmt.Errorf("%s: %w", op, err)
		}
		err = CheckResponse(op, resp)
		se, _ := err.(*SenseError)
		if se == nil || se.Status != StatusCheckCondition || se.Key != SenseUnitAttention || se.Deferred || retry >= limit {
			return resp, err
		}
		if o.OnUnitAttention != nil {
			o.OnUnitAttention(se)
		}
		if cerr := ctx.Err(); cerr != nil {
			return resp, fmt.Errorf("%s: retry after unit attention: %w", op, cerr)
		}
	}
}

// CheckResponse returns nil for GOOD status and otherwise a *SenseError
// named op, with the sense decoded for CHECK CONDITION. Sense data that does
// not decode leaves Key, ASC and ASCQ zero; Sense keeps the raw bytes.
func CheckResponse(op string, r Response) error {
	if r.Status == StatusGood {
		return nil
	}
	e := &SenseError{Op: op, Status: r.Status}
	if len(r.Sense) > 0 {
		e.Sense = append([]byte(nil), r.Sense...)
	}
	if r.Status == StatusCheckCondition {
		if s, err := DecodeSense(r.Sense); err == nil {
			e.Key, e.ASC, e.ASCQ, e.Deferred = s.Key, s.ASC, s.ASCQ, s.Deferred
		}
	}
	return e
}
