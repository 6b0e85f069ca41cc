// Package onsignal closes what tests have open (testbeds, namespace rigs)
// when the process gets SIGINT or SIGTERM, then lets the signal take its
// usual course. One registry for the whole process: with one handler per
// package, the first to run would re-raise the signal and end the process
// before the others had closed anything.
package onsignal

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Kind names what a closer is for the message printed on the signal:
// "<Package>: <signal>: closing N <Noun>(s)".
type Kind struct{ Package, Noun string }

var live struct {
	sync.Mutex
	once sync.Once
	set  map[io.Closer]Kind
}

// Register adds c to the set closed on SIGINT or SIGTERM.
func Register(c io.Closer, kind Kind) {
	live.Lock()
	defer live.Unlock()
	if live.set == nil {
		live.set = make(map[io.Closer]Kind)
	}
	live.set[c] = kind
	live.once.Do(func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-sig
			live.Lock()
			byKind := map[Kind][]io.Closer{}
			var kinds []Kind
			for c, k := range live.set {
				if byKind[k] == nil {
					kinds = append(kinds, k)
				}
				byKind[k] = append(byKind[k], c)
			}
			live.Unlock()
			for _, k := range kinds {
				fmt.Fprintf(os.Stderr, "%s: %v: closing %d %s(s)\n", k.Package, s, len(byKind[k]), k.Noun)
				for _, c := range byKind[k] {
					_ = c.Close()
				}
			}
			signal.Reset(s)
			_ = syscall.Kill(os.Getpid(), s.(syscall.Signal))
		}()
	})
}

// Unregister removes c; closing it is the caller's business.
func Unregister(c io.Closer) {
	live.Lock()
	defer live.Unlock()
	delete(live.set, c)
}
