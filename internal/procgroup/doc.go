// Package procgroup records the process groups that resmon's generic
// applications run in, one file per resource in a state directory, so that
// a resmon started after a crash can kill a group its predecessor left
// behind; the process's start time (/proc/PID/stat, field 22) makes sure a
// recycled pid is never taken for the group's leader.
package procgroup
