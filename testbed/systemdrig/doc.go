// Package systemdrig boots the host's own systemd in a throwaway container
// for tests of what talks to systemd (the generic_service type): the
// build machines do not run systemd as PID 1.
//
// # The container
//
// Start runs
//
//	systemd-nspawn -D / --volatile=yes -b --register=no --keep-unit --private-network -M <name>
//	    --console=pipe --quiet --bind=<UnitDir>:/etc/systemd/system --bind=<Dir>/machine-id:/etc/machine-id
//	    [--bind-ro=HOST:CONTAINER ...]
//	    systemd.firstboot=off systemd.unit=basic.target systemd.mask=systemd-machine-id-commit.service wolfpack.rig=<name>
//
// and waits until `systemctl is-system-running` inside says running (or
// degraded). --volatile=yes gives the container a tmpfs root with the
// host's /usr read-only: an empty /etc, so the units a test needs are in
// UnitDir. --private-network gives it a network namespace of its own with
// only lo: nothing inside can touch the host's interfaces.
//
// The machine id is given (a file of the rig's) so that the boot is not a
// first boot: on a first boot systemd enables every unit by its preset,
// which on a machine with packages installed starts their daemons (and
// writes the enablement symlinks into UnitDir). systemd.unit=basic.target
// stops the boot at the basic system (about 0.5 s); the commit of a
// transient machine id is masked (ours is a bind mount, not one to
// commit). wolfpack.rig=<name> is ignored by systemd and marks the
// container's init for Sweep.
//
// # Reaching it
//
// Enter returns the nsenter command line that runs a program in the
// container's mount, pid, UTS, IPC and network namespaces, as the programs
// of the container see them: the private socket /run/systemd/private is
// the container's systemd's. Binds put the test's binaries inside.
//
// # Teardown
//
// Close asks nspawn to halt the container (SIGTERM), then to terminate it
// at once (SIGTERM again after HaltWait), then kills nspawn and the
// container's init; their namespaces and every mount of the container go
// with them. It removes the rig's directory and the propagation directory
// nspawn leaves in /run/systemd/nspawn/propagate. New registers Close with
// t.Cleanup; SIGINT and SIGTERM close open rigs; nspawn gets SIGTERM when
// the test process dies (PDEATHSIG); Start sweeps the containers,
// directories and propagation directories of runs whose process is gone.
package systemdrig
