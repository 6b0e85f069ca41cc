// Package genericapp is the generic_application resource type: a command
// run by /bin/sh -c in a process group of its own, watched, stopped with
// SIGTERM then SIGKILL (docs/resources.md).
package genericapp
