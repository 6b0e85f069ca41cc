package physicaldisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// ReservationType is the data disk's reservation: Write Exclusive -
// Registrants Only, as on the quorum LUN. Any registrant may write, so
// taking a disk over removes every other registration, not only the
// holder's.
const ReservationType = scsi.WriteExclusiveRegistrantsOnly

// takeOver makes key the only registration on dev and its holder:
// REGISTER AND IGNORE EXISTING KEY; if another key holds the reservation,
// PREEMPT AND ABORT it (PREEMPT where the target refuses that service
// action: scsi.PreemptAbortOrPreempt), else RESERVE if nobody holds it;
// then PREEMPT AND ABORT every other registered key; then read both back.
// Reference: SPC-4 5.12.11.4 (preempting), 5.12.2 Table 60 (who may write).
func takeOver(ctx context.Context, dev scsi.Device, key uint64, log *slog.Logger) error {
	if err := scsi.RegisterAndIgnore(ctx, dev, key); err != nil {
		return fmt.Errorf("register key %#x: %w", key, err)
	}
	r, err := scsi.ReadReservation(ctx, dev)
	if err != nil {
		return fmt.Errorf("read the reservation: %w", err)
	}
	switch {
	case !r.Held:
		if err := scsi.Reserve(ctx, dev, key, ReservationType); err != nil {
			return fmt.Errorf("reserve with key %#x: %w", key, err)
		}
		log.Info("reserved", "key", keyString(key))
	case r.Key != key:
		if err := preempt(ctx, dev, key, r.Key, log); err != nil {
			return fmt.Errorf("take the reservation over: %w", err)
		}
		log.Info("reservation taken over", "key", keyString(key), "previous_holder", keyString(r.Key))
	}
	keys, err := scsi.ReadKeys(ctx, dev)
	if err != nil {
		return fmt.Errorf("read the keys: %w", err)
	}
	var done []uint64
	for _, k := range keys.Keys {
		if k == key || slices.Contains(done, k) {
			continue
		}
		if err := preempt(ctx, dev, key, k, log); err != nil {
			return fmt.Errorf("remove a stale registration: %w", err)
		}
		done = append(done, k)
		log.Info("stale registration removed", "victim", keyString(k))
	}
	return checkHeld(ctx, dev, key)
}

// preempt removes victim's registrations (and takes its reservation, if
// it holds one) with PREEMPT AND ABORT, or PREEMPT where refused.
func preempt(ctx context.Context, dev scsi.Device, key, victim uint64, log *slog.Logger) error {
	fellBack, err := scsi.PreemptAbortOrPreempt(ctx, dev, key, victim, ReservationType)
	if err != nil {
		return fmt.Errorf("preempt key %#x: %w", victim, err)
	}
	if fellBack {
		log.Debug("PREEMPT AND ABORT refused, sent PREEMPT", "victim", keyString(victim))
	}
	return nil
}

// errLost is the reservation no longer being this node's.
var errLost = errors.New("physicaldisk: reservation lost")

// checkHeld reports whether key is registered and holds the reservation;
// an error wrapping errLost says it does not.
func checkHeld(ctx context.Context, dev scsi.Device, key uint64) error {
	r, err := scsi.ReadReservation(ctx, dev)
	if err != nil {
		return fmt.Errorf("read the reservation: %w", err)
	}
	switch {
	case !r.Held:
		return fmt.Errorf("%w: no reservation on the disk (key %#x)", errLost, key)
	case r.Key != key:
		return fmt.Errorf("%w: held by key %#x, not ours (%#x)", errLost, r.Key, key)
	case r.Type != ReservationType:
		return fmt.Errorf("%w: type %s, not %s", errLost, r.Type, ReservationType)
	}
	keys, err := scsi.ReadKeys(ctx, dev)
	if err != nil {
		return fmt.Errorf("read the keys: %w", err)
	}
	if !slices.Contains(keys.Keys, key) {
		return fmt.Errorf("%w: key %#x not registered (keys %s)", errLost, key, keyList(keys.Keys))
	}
	return nil
}

// release gives the disk up: RELEASE, then unregister. A key that is no
// longer registered (another node preempted it) has nothing to release.
func release(ctx context.Context, dev scsi.Device, key uint64) error {
	keys, err := scsi.ReadKeys(ctx, dev)
	if err != nil {
		return fmt.Errorf("read the keys: %w", err)
	}
	if !slices.Contains(keys.Keys, key) {
		return nil
	}
	var errs []error
	if r, err := scsi.ReadReservation(ctx, dev); err != nil {
		errs = append(errs, fmt.Errorf("read the reservation: %w", err))
	} else if r.Held && r.Key == key {
		if err := scsi.Release(ctx, dev, key, r.Type); err != nil {
			errs = append(errs, fmt.Errorf("release the reservation: %w", err))
		}
	}
	if err := scsi.Register(ctx, dev, key, 0); err != nil {
		errs = append(errs, fmt.Errorf("unregister key %#x: %w", key, err))
	}
	return errors.Join(errs...)
}

func keyString(k uint64) string { return fmt.Sprintf("0x%016x", k) }

func keyList(keys []uint64) string {
	s := "["
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += keyString(k)
	}
	return s + "]"
}
