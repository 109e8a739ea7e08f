# cryptvol — see README.md. `make test` = unit tests (any machine, no root) then the VM stage (the lab).
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED ?= 0

# Packages that have lab tests (files *_lab_test.go with the `lab` build tag), compiled here, run in the guest.
LAB_PKGS = $(sort $(patsubst ./%/,%,$(dir $(shell find . -name '*_lab_test.go' -not -path './bin/*'))))

.PHONY: all build plugin test test-main test-faults test-e2e test-docker26 test-shared unit lab-bins vm-test vm-shell lab-prepare clean fmt-check demo

all: build

build: bin/cryptvol

# The version stamped into the binary (internal/version): `cryptvol version`, the plugin's log and audit trail, and
# through scripts/plugin/build the bundle's config.json. bin/version changes only when the version does, so a new
# commit relinks the binary even when no Go file changed, and an unchanged tree does not.
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS = -s -w -X github.com/cryptvol/cryptvol/internal/version.stamp=$(VERSION)
.PHONY: FORCE
bin/version: FORCE
	@mkdir -p bin; [ "$$(cat $@ 2>/dev/null)" = "$(VERSION)" ] || echo "$(VERSION)" > $@

bin/cryptvol: $(shell find . -name '*.go' -not -name '*_test.go' -not -path './bin/*') go.mod go.sum bin/version
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/cryptvol

# The managed plugin bundle (config.json + rootfs/) for `docker plugin create cryptvol bin/plugin`. Needs Go and
# the Debian packages of its rootfs (scripts/plugin/build installs them), not the lab.
plugin: build
	scripts/plugin/build

# The CSI bundle (bin/plugin-csi) for Swarm cluster volumes: `docker plugin create cryptvol-csi bin/plugin-csi`
# (scripts/plugin/build-csi says how it differs; docs/csi.md how to use it).
.PHONY: plugin-csi
plugin-csi: plugin
	scripts/plugin/build-csi

# The release a user downloads: bin/release/cryptvol-plugin-VERSION.tar.gz (config.json and rootfs/, what
# `docker plugin create` takes), its SHA-256 in sha256sum's format, and an inventory of what it holds (Go modules,
# Debian packages; scripts/release/inventory). The tarball is reproducible from the same bundle: names sorted, every
# file owned by 0:0, every mtime the commit's time, gzip without a name or time stamp. VERSION is the one stamped
# into the binary, so the file name, the binary and config.json agree.
.PHONY: release
release: plugin
	@set -euo pipefail; v=$$(bin/cryptvol version --json | sed -n 's/^ *"version": "\(.*\)",$$/\1/p'); \
	 [ -n "$$v" ] && [ "$$v" != unknown ] || { echo "release: bin/cryptvol has no version stamped (git describe failed?)" >&2; exit 1; }; \
	 rel=bin/release; name=cryptvol-plugin-$$v; rm -rf $$rel; mkdir -p $$rel; \
	 mtime=$$(git log -1 --format=%ct 2>/dev/null || echo 0); \
	 tar -C bin/plugin --sort=name --mtime=@$$mtime --owner=0 --group=0 --numeric-owner -cf - config.json rootfs \
		| gzip -n -9 > $$rel/$$name.tar.gz; \
	 (cd $$rel && sha256sum $$name.tar.gz > $$name.tar.gz.sha256); \
	 scripts/release/inventory bin/cryptvol bin/plugin/rootfs/usr/share/cryptvol/debian-packages > $$rel/$$name.inventory.txt; \
	 ls -l $$rel; cat $$rel/$$name.tar.gz.sha256

# Push the bundle (BUNDLE, default bin/plugin) to a registry as REGISTRY/cryptvol:TAG (TAG defaults to the version
# stamped into the bundle's binary), for `docker plugin install REGISTRY/cryptvol:TAG` elsewhere (scripts/plugin/push):
# needs a Docker engine, so it runs on a Docker host or in the lab guest (tests/e2e/upgrade.sh), after `make plugin`.
# A registry on 127.0.0.0/8 may speak plain HTTP (dockerd trusts loopback); any other needs TLS or dockerd's
# --insecure-registry.
TAG ?=
BUNDLE ?= bin/plugin
.PHONY: plugin-push
plugin-push:
	@scripts/plugin/push "$(REGISTRY)" "$(TAG)" "$(BUNDLE)"

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: fmt-check
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	$(GO) test -count=1 -tags failpoints ./internal/failpoint
	$(MAKE) --no-print-directory fuzz FUZZTIME_LUKS=20000x

# Fuzz the parsing of what users type (volume names, --opt options, sizes), of trash ids read from LV names and of
# export files beyond the committed seed corpus (volume/options/testdata/fuzz, volume/testdata/fuzz), FUZZTIME per target, and
# the direct open's reading of LUKS2 headers against cryptsetup's (luks/plainheader_fuzz_test.go, as root with cryptsetup; FUZZTIME_LUKS inputs: `make test` runs a bounded count,
# `make fuzz` alone more; first the walk of every single-value edit, which -race would slow to minutes). A failing input is written to the package's testdata/fuzz: commit it with the fix.
# The default is a count of inputs (about 10 s each here), not a duration: when a duration runs out, Go 1.26's
# fuzz coordinator can report its own deadline as a failure of the target ("context deadline exceeded", no input
# written; golang/go#75804, fixed in Go 1.27), as FuzzParseSize did once in `make test`. A count has no deadline.
FUZZTIME ?= 300000x
FUZZTIME_LUKS ?= 200000x
FUZZ_TARGETS = ./volume/options:FuzzValidateName:$(FUZZTIME) ./volume/options:FuzzParseOptions:$(FUZZTIME) \
	./volume/options:FuzzParseSize:$(FUZZTIME) ./luks:FuzzParseNameList:$(FUZZTIME) \
	./volume:FuzzParseTrashID:$(FUZZTIME) ./export:FuzzReader:$(FUZZTIME) \
	./luks:FuzzDirectOpenAgreesWithCryptsetup:$(FUZZTIME_LUKS)
.PHONY: fuzz
fuzz:
	@echo "go test -run TestHostDirectOpenAgreesOnEverySingleEdit ./luks"; \
	 $(GO) test -count=1 -run '^TestHostDirectOpenAgreesOnEverySingleEdit$$' ./luks || exit 1; \
	 for t in $(FUZZ_TARGETS); do \
		IFS=: read -r pkg f n <<< "$$t"; \
		echo "go test -fuzz=$$f -fuzztime=$$n $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime=$$n $$pkg || exit 1; \
	done

# The lab's KMIP checker (tests/keystate), which the end-to-end scripts, the pair and the demo run through
# scripts/kmip/key-state.
bin/key-state: $(shell find tests/keystate internal/keyscan -name '*.go' -not -name '*_test.go') go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./tests/keystate

# One CSI request from the command line (tests/csicall): make bench times a node publish with it.
bin/csi-call: $(shell find tests/csicall -name '*.go') go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./tests/csicall

# Every mount and unmount in a namespace as it happens (tests/mountwatch): the trace of a docker run in make bench.
bin/mount-watch: $(shell find tests/mountwatch -name '*.go') go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./tests/mountwatch

# The CSI project's conformance suite, pinned in go.mod as a tool (tests/csi_lab_test.go runs it in the guest).
bin/csi-sanity: go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity

# The plugin with its failpoints live (internal/failpoint), for the lab's kill at every step.
bin/cryptvol-failpoints: $(shell find . -name '*.go' -not -name '*_test.go' -not -path './bin/*') go.mod go.sum bin/version
	$(GO) build -tags failpoints -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/cryptvol

# The soak driver (tests/soak), run in the guest by the lab part soak.
bin/soak: $(shell find tests/soak -name '*.go' -not -name '*_test.go') go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./tests/soak

lab-bins: build bin/key-state bin/cryptvol-failpoints bin/soak bin/csi-sanity
	@rm -rf bin/lab && mkdir -p bin/lab
	@for p in $(LAB_PKGS); do \
		echo "go test -c -tags lab ./$$p"; \
		$(GO) test -c -tags lab -o bin/lab/$$(echo $$p | tr / _).test ./$$p || exit 1; \
	done

lab-prepare:
	scripts/vm/prepare

# The bundle of the last commit before the data directory (mount/layout.go), built from this repository's history
# in a worktree: tests/e2e/migration.sh (not in `make test`) makes volumes with it and upgrades to this one.
PREV_COMMIT ?= 58c5599
.PHONY: plugin-prev plugin-old
plugin-prev: bin/plugin-prev/config.json
bin/plugin-prev/config.json:
	scripts/plugin/build-at $(PREV_COMMIT) bin/plugin-prev

# The bundle of the last release, which tests/e2e/upgrade.sh pushes to a registry beside this build's, installs, and
# upgrades to this build and back. Move it to each release's commit once that release has landed.
UPGRADE_FROM ?= c2bde57
plugin-old: bin/plugin-old/config.json
bin/plugin-old/config.json:
	scripts/plugin/build-at $(UPGRADE_FROM) bin/plugin-old

# The VM stage: lab guests, one per host core at a time (scripts/vm/test-stage): "shared" first (two guests that
# share a disk: a shared volume group's volumes moving between hosts, tests/shared/pair.sh), then the longest first:
# "docker26" (contract.sh, failclosed.sh, upgrade.sh and a soak under Debian trixie's Docker 26.1,
# scripts/vm/docker-debian trixie), "e2e" (contract.sh, docker.sh, failclosed.sh and a soak under Debian bookworm's
# Docker 20.10; scripts/vm/lab-tests says why each runs where), "main" (kernel smoke, the Go lab tests) and "faults" (SIGKILL of the plugin at every step, then 50 concurrent volumes).
vm-test: lab-prepare lab-bins plugin plugin-old
	scripts/vm/test-stage

test: unit vm-test

# One part of the VM stage alone, for working on it.
test-main: lab-prepare lab-bins plugin
	scripts/vm/test-stage main
test-faults: lab-prepare lab-bins plugin
	scripts/vm/test-stage faults
test-e2e: lab-prepare lab-bins plugin
	scripts/vm/test-stage e2e
test-docker26: lab-prepare lab-bins plugin plugin-old
	scripts/vm/test-stage docker26
test-shared: lab-prepare plugin bin/key-state
	scripts/vm/test-stage shared
# The upgrade of a shared volume group's hosts one at a time (tests/shared/upgrade.sh): two guests for about ten
# minutes, so not in `make test`.
# The undo window for removes in a shared volume group (tests/shared/trash.sh): two guests for about 5 minutes.
.PHONY: test-shared-trash
test-shared-trash: lab-prepare build bin/key-state
	scripts/vm/run-pair tests/shared/trash.sh

# Export on one host, import on another into a volume group of its own (tests/shared/export.sh): two guests.
.PHONY: test-shared-export
test-shared-export: lab-prepare build bin/key-state
	scripts/vm/run-pair tests/shared/export.sh

# Swarm cluster volumes through the CSI bundle on two hosts under Docker 28.5 (tests/shared/csi.sh): two guests.
.PHONY: test-shared-csi
test-shared-csi: lab-prepare plugin-csi bin/key-state
	scripts/vm/run-pair tests/shared/csi.sh

.PHONY: test-shared-upgrade
test-shared-upgrade: lab-prepare plugin plugin-old bin/key-state
	scripts/vm/run-pair tests/shared/upgrade.sh

# The seeded soak (tests/soak) in one lab guest under Docker 26.1: random operations and faults for SOAK_MINUTES,
# invariants checked after every settle period and at the end. SOAK_SEED=N replays a run's choices (0: a random
# seed, printed). The guest's time limit grows with the minutes (setup and the final check come on top), unless
# LAB_TIMEOUT is set.
SOAK_SEED ?= 0
SOAK_MINUTES ?= 60
.PHONY: soak
soak: lab-prepare plugin bin/key-state bin/soak
	LAB_SOAK_SEED=$(SOAK_SEED) LAB_SOAK_MINUTES=$(SOAK_MINUTES) \
		LAB_TIMEOUT=$${LAB_TIMEOUT:-$$((2400 + 90 * $(SOAK_MINUTES)))} scripts/vm/test-stage soak

# The story, end to end, in a fresh lab guest under Docker 26.1 (Debian trixie's, scripts/vm/docker-debian trixie, as
# the soak and the docker26 part of the VM stage run it).
demo: lab-prepare plugin bin/key-state
	LAB_DOCKER_ROOT=$$(scripts/vm/docker-debian trixie) && export LAB_DOCKER_ROOT && scripts/vm/run scripts/demo-guest

vm-shell: lab-prepare build
	scripts/vm/run --shell

# Performance, in a fresh lab guest: encrypted vs plain I/O (fio), operation latencies through the real
# plugin and dockerd, BENCH_CONCURRENT docker runs at once, the PBKDF choice, List and start-up at scale. Prints a table; the CSV lands in
# bin/bench/results.csv (cut out of the guest's output: the guest cannot write into the repository). Settings:
# BENCH_SCALE thin volumes for the scale part (measured at 50, 100 and 200 by default; the creates dominate the run
# time under emulation, about 30 minutes for 200), BENCH_RUNS runs per figure (medians are reported), BENCH_PARTS a subset of the parts.
# The guest's time limit and its data disks (each thin volume takes ~20 MiB of pool at create) grow with
# BENCH_SCALE unless LAB_TIMEOUT or LAB_DISK_SIZE are set.
BENCH_SCALE ?= 200
BENCH_RUNS ?= 5
BENCH_PARTS ?= pbkdf fio latency docker concurrent scale
BENCH_CONCURRENT ?= 100
BENCH_CONCURRENT_RUNS ?= 3
BENCH_PLUGIN_TIMEOUT ?= 120
.PHONY: bench
bench: lab-prepare plugin bin/csi-call bin/mount-watch
	@mkdir -p bin/bench
	set -o pipefail; LAB_TIMEOUT=$${LAB_TIMEOUT:-$$((1800 + 30 * $(BENCH_SCALE)))} \
		LAB_DISK_SIZE=$${LAB_DISK_SIZE:-$$((4 + $(BENCH_SCALE) * 32 / 1024))G} scripts/vm/run \
		env BENCH_SCALE=$(BENCH_SCALE) BENCH_RUNS=$(BENCH_RUNS) 'BENCH_PARTS=$(BENCH_PARTS)' \
		BENCH_CONCURRENT=$(BENCH_CONCURRENT) BENCH_CONCURRENT_RUNS=$(BENCH_CONCURRENT_RUNS) \
		BENCH_PLUGIN_TIMEOUT=$(BENCH_PLUGIN_TIMEOUT) scripts/bench/run-guest \
		| tee bin/bench/output.txt
	scripts/bench/extract-csv bin/bench/output.txt bin/bench/results.csv
	scripts/bench/host-aes | tee -a bin/bench/output.txt

clean:
	rm -rf bin
