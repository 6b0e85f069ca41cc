# Wolfpack. The two commands a new user needs: `make demo` and `make test`.
# Both install what they need (scripts/deps.sh) and are safe to run again.

SHELL     := /bin/bash
GO        ?= go
FUZZTIME  ?= 5s
# Integration tests boot QEMU guests and start tgtd; they need root.
INTEGRATION_TIMEOUT ?= 20m
INTEGRATION_RUN     ?= TestIntegration

.PHONY: all build deb appliance reproducible deps check test unit sim mutants fuzz integration testbed demo bench bench-membership bench-net bench-gup bench-resmon bench-failover bench-race bench-vm bench-idle soak clean

all: build

build:
	$(GO) build ./...

deps:
	./scripts/deps.sh

# The Debian package, dist/wolfpack_VERSION_amd64.deb: static binaries,
# the systemd unit, man pages, a sample node file (docs/install.md).
deb:
	GO=$(GO) ./scripts/deb.sh

# The appliance (docs/appliance.md): dist/appliance/ holds vmlinuz, the
# LZ4-compressed initramfs, the single-file UEFI image wolfpack.efi and
# SHA256SUMS; the same commit builds the same bytes.
appliance: deps
	$(GO) run ./cmd/wolfpack-appliance build -o dist/appliance -version "$$(./scripts/version.sh)"

# Shows it: builds the appliance twice from scratch and compares every
# output byte for byte (several minutes). make test runs it as
# REPRO_WORK=.cache/testbed/appliance-work: the first build reuses the
# u-root commands the appliance tests built there, the second starts from
# nothing (under 2 minutes).
REPRO_WORK ?=
reproducible: deps
	WOLFPACK_APPLIANCE_WORK=$(REPRO_WORK) $(GO) test -count=1 -timeout 40m -run 'TestApplianceReproducible' -v ./initramfs/

# Static gates: formatting, vet, and a go.mod that `go mod tidy` leaves alone.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants changes in:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result"; exit 1; }
	@if git grep -n -E 'DESIGN(\.md)? *§|DESIGN\.md|TARGETS\.md|design brief|steering repo' -- ':!Makefile'; then echo "the lines above point to documents outside this repository"; exit 1; fi

# Unit tests and the simulator: no root, race detector on. Integration tests
# skip themselves under -short.
unit:
	$(GO) test -race -short -count=1 ./...

# Ring 1 at full size: 10,000 simulator seeds over 2..16 nodes and 20 at 64,
# with GUP clients writing and reading through random nodes and 1-4 groups
# under the failover manager (about 9 minutes on 2 cores, 13 on a busy
# machine), the timing table over 50 seeds a row, the lease's cost, and the
# quorum log's crash test at 1,000 crash points; `unit` runs fewer of each
# under -race.
# SIM_COUNT seeds of the 2..16-node run: 10,000 here, fewer in make test
# (below), which must fit CI's 30 minutes beside the VM tests.
SIM_COUNT ?= 10000
sim:
	WOLFPACK_SIM_COUNT=$(SIM_COUNT) $(GO) test -count=1 -timeout 25m -run 'TestSimulator|TestTimings|TestLeaseCost' ./sim/
	$(GO) test -count=1 -run 'TestCrashReplay' ./quorumdisk/

# The checkers can fail: plant each fault of cmd/wolfpack-mutants into the
# tree (go test -overlay: the work tree is untouched) and show that the
# simulator, the crash test or the join tests catch it: fault → seed →
# invariant. Under a minute.
mutants:
	$(GO) run ./cmd/wolfpack-mutants

# Every fuzz target, briefly (FUZZTIME each).
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Ring 2 and 3: real tgt, real QEMU guests, real SG_IO. The quorum race
# runs 8 rounds here (20 when run by itself, as BENCHMARKS.md's figures).
# Each test's result is printed; the whole -v output is kept in
# .cache/integration.log for when one fails.
integration: deps
	@mkdir -p .cache; set -o pipefail; \
	WOLFPACK_QUORUM_RACE_ROUNDS=8 $(GO) test -v -count=1 -p 1 -timeout $(INTEGRATION_TIMEOUT) -run '$(INTEGRATION_RUN)' ./... 2>&1 | \
	  tee .cache/integration.log | grep --line-buffered -E '^(--- |ok |FAIL|panic:)|^\s+--- '; \
	st=$$?; if [ $$st -ne 0 ]; then echo "integration: failed; the last 300 lines of .cache/integration.log:"; tail -n 300 .cache/integration.log; fi; exit $$st

# The fault matrix (testbed/matrix, docs/testbed.md) in QEMU guests:
# every scenario, on one cluster booted for the package (2 nodes, then 3
# for the rolling restart). `integration` runs the representative half of
# it (WOLFPACK_MATRIX unset).
TESTBED_TIMEOUT ?= 45m
testbed: deps
	@mkdir -p .cache; set -o pipefail; \
	WOLFPACK_MATRIX=all $(GO) test -v -count=1 -p 1 -timeout $(TESTBED_TIMEOUT) -run 'TestIntegration' ./testbed/matrix/ 2>&1 | \
	  tee .cache/testbed.log | grep --line-buffered -E '^(--- |ok |FAIL|panic:)|^\s+--- |: (client|data LUN|config|FINDING)'; \
	st=$$?; if [ $$st -ne 0 ]; then echo "testbed: failed; the whole -v output is in .cache/testbed.log"; fi; exit $$st

test: deps check unit sim mutants fuzz integration reproducible
test: SIM_COUNT = 3000
test: REPRO_WORK = $(CURDIR)/.cache/testbed/appliance-work

demo: deps
	$(GO) run ./cmd/wolfpack-demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# resmon's CPU and memory with 1,000 generic applications polled at the
# default intervals, over 60 s (BENCHMARKS.md, "resmon").
BENCH_RESMON ?= 1000,60
bench-resmon: deps
	WOLFPACK_BENCH_RESMON=$(BENCH_RESMON) $(GO) test -count=1 -p 1 -timeout 20m -run 'TestIntegrationBenchResmon' -v ./internal/resmon/

# Ring 2 membership figures: real clusterd processes in network namespaces
# on tgt, 2/4/8/16 nodes, detection / regroup / join (a few minutes; root).
bench-membership: deps
	WOLFPACK_BENCH_MEMBERSHIP=2,4,8,16 $(GO) test -count=1 -p 1 -timeout 30m -run 'TestIntegrationBenchMembership' -v ./testbed/nscluster/membership/

# Failover on a node crash, BENCH_FAILOVER times on one 2-node cluster:
# the client's outage, detection, lease wait (median, p95; root).
BENCH_FAILOVER ?= 20
bench-failover: deps
	WOLFPACK_BENCH_FAILOVER=$(BENCH_FAILOVER) $(GO) test -count=1 -p 1 -timeout 30m -run 'TestIntegrationBenchFailover' -v ./testbed/nscluster/failover/

# The race against keepalived 2.2.7 (VRRPv2 advert 1 s, VRRPv3 0.1 s) and
# Wolfpack at both timing profiles: BENCH_RACE rounds, each a node crash
# and a planned move on every system, the same client probe (root).
BENCH_RACE ?= 10
bench-race: deps
	WOLFPACK_BENCH_RACE=$(BENCH_RACE) $(GO) test -count=1 -p 1 -timeout 60m -run 'TestIntegrationBenchRace' -v ./testbed/nscluster/failover/
# The node crash and the planned move in the QEMU guests of the fault
# matrix, BENCH_VM times each on one 2-node cluster: the client's outage
# (median, p95; root). About a minute a crash (the VM boots again).
BENCH_VM ?= 10
bench-vm: deps
	WOLFPACK_BENCH_VM=$(BENCH_VM) $(GO) test -count=1 -p 1 -timeout 90m -run 'TestIntegrationBenchVM' -v ./testbed/matrix/

# net/ figures: address online (probe and not), announcement → client
# neighbour entry, mDNS announcement → client, link watch reports, over
# BENCH_NET runs each (root).
BENCH_NET ?= 20
bench-net: deps
	WOLFPACK_BENCH_NET=$(BENCH_NET) $(GO) test -count=1 -p 1 -timeout 10m -run 'TestIntegrationBench(Address|MDNS|LinkWatch)' -v ./net/vip/ ./net/mdns/ ./net/linkwatch/

# Replicated updates: one client's latency (p50/p99) and 16 clients'
# updates per second, each system of BENCH_GUP brought up for each of
# BENCH_GUP_RUNS interleaved runs (testbed/gupbench; etcd 3.4 at 3 members in
# namespaces: about 25 s a run; root).
BENCH_GUP      ?= etcd,wolfpack,wolfpack-sync
BENCH_GUP_RUNS ?= 3
bench-gup: deps
	WOLFPACK_BENCH_GUP=$(BENCH_GUP) WOLFPACK_BENCH_GUP_RUNS=$(BENCH_GUP_RUNS) $(GO) test -count=1 -p 1 -timeout 60m -run 'TestIntegrationBenchGUP' -v ./testbed/gupbench/

# An idle two-node cluster's cost at both timing profiles: CPU and
# resident memory of each clusterd and its resmon, three 5 s windows
# (BENCHMARKS.md, "Idle cost"; root).
bench-idle: deps
	WOLFPACK_BENCH_IDLE=2 WOLFPACK_BENCH_IDLE_PROFILES=default,fast $(GO) test -count=1 -p 1 -timeout 10m -run 'TestIntegrationBenchIdle' -v ./testbed/gupbench/

# False-suspicion soak: 10 minutes, a CPU hog in every node's namespace,
# at the timing profile SOAK_PROFILE (default or fast), a group with an
# address online throughout; any suspicion, regroup or lease that runs out
# fails it (root).
# The rig's files and the quorum LUN's backing file go to SOAK_TMPDIR
# (tmpfs): the LUN stands for a storage array, which acknowledges a write
# from its cache, not for this machine's disk (BENCHMARKS.md,
# "False-suspicion soak"); tgtd runs at SCHED_RR for the same reason.
SOAK ?= 10m
SOAK_PROFILE ?= default
SOAK_TMPDIR ?= /dev/shm
soak: deps
	TMPDIR=$(SOAK_TMPDIR) WOLFPACK_SOAK=$(SOAK) WOLFPACK_SOAK_PROFILE=$(SOAK_PROFILE) $(GO) test -count=1 -p 1 -timeout 30m -run 'TestIntegrationSoakCPUHog' -v ./testbed/nscluster/membership/

clean:
	rm -rf bin dist .cache/deb
