package clustercli

import (
	"errors"
	"flag"
	"time"
)

// durationValue is a time.Duration flag whose refusal says what a duration
// looks like (the flag package's own says only "parse error").
type durationValue struct{ p *time.Duration }

// durationVar defines a duration flag as fs.DurationVar does.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration) {
	*p = value
	fs.Var(durationValue{p}, name, "")
}

func (d durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration: want a number with a unit, such as 10s, 1.5s or 500ms")
	}
	*d.p = v
	return nil
}

func (d durationValue) String() string {
	if d.p == nil {
		return ""
	}
	return d.p.String()
}
