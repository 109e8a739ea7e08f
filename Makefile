# cryptvol — see README.md. `make test` = unit tests (any machine, no root) then the VM stage (the lab).
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED ?= 0

# Packages that have lab tests (files *_lab_test.go with the `lab` build tag), compiled here, run in the guest.
LAB_PKGS = $(sort $(patsubst ./%/,%,$(dir $(shell find . -name '*_lab_test.go' -not -path './bin/*'))))

.PHONY: all build test unit lab-bins vm-test vm-shell lab-prepare clean fmt-check

all: build

build: bin/cryptvol

bin/cryptvol: $(shell find . -name '*.go' -not -name '*_test.go' -not -path './bin/*') go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/cryptvol

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit: fmt-check
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

lab-bins: build
	@rm -rf bin/lab && mkdir -p bin/lab
	@for p in $(LAB_PKGS); do \
		echo "go test -c -tags lab ./$$p"; \
		$(GO) test -c -tags lab -o bin/lab/$$(echo $$p | tr / _).test ./$$p || exit 1; \
	done

lab-prepare:
	scripts/vm/prepare

vm-test: lab-prepare lab-bins
	scripts/vm/run scripts/vm/lab-tests

test: unit vm-test

vm-shell: lab-prepare build
	scripts/vm/run --shell

clean:
	rm -rf bin
