# HaloDB — `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install native kubo dns browser dnslink-test pinning-compliance demo test fuzz typecheck lint bench bench-quick bench-serve bench-open clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# HaloDB's compiled hot loops (native/, Rust): built when cargo is there (required under CI=true).
# The stamp is made only once the module imports, so a later `make install` (Rust installed
# meanwhile) builds it.
$(VENV)/.native: $(VENV)/.installed scripts/install-native.sh native/Cargo.toml native/Cargo.lock native/pyproject.toml native/halodb_native.pyi $(wildcard native/src/*.rs)
	scripts/install-native.sh $(BIN)/python
	if $(BIN)/python -c "import halodb_native" 2>/dev/null; then touch $@; else rm -f $@; fi

native: $(VENV)/.native

install: $(VENV)/.installed $(VENV)/.native

demo: install
	$(BIN)/halodb demo

tools/bin/ipfs: scripts/install-kubo.sh
	scripts/install-kubo.sh

kubo: tools/bin/ipfs

dns:
	scripts/install-dns.sh

# headless Chromium from the distribution (Debian: chromium) for the landing pages' real-browser tests
browser:
	scripts/install-chromium.sh

# the DNSLink spec's test suite (@dnslink/test, pinned in scripts/dnslink-test) into tools/dnslink-test
dnslink-test:
	scripts/install-dnslink-test.sh

# the IPFS Pinning Service API's compliance checker and mock service (npm, pinned in
# scripts/pinning-compliance) into tools/pinning-compliance
pinning-compliance:
	scripts/install-pinning-compliance.sh

# tests run in a random order (pytest-randomly prints the seed; `pytest --randomly-seed=N` repeats an order),
# in two processes (pytest-xdist; --dist loadfile: a module's tests, and so its Kubo nodes, BIND servers and
# other module fixtures, stay in one process); the 30 slowest are listed at the end: make test should stay
# well under 20 minutes. PYTEST_WORKERS=0 runs them in this one process.
PYTEST_WORKERS ?= 2
test: install tools/bin/ipfs dns browser dnslink-test pinning-compliance
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=30

# the fuzz tests (tests/fuzz, also in `make test`) with 25x the inputs, random and with Hypothesis' database
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:randomly tests/fuzz

typecheck: install
	$(BIN)/mypy

lint: install
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_index.py --sizes 10000 100000

bench-quick: install
	$(BIN)/python benchmarks/bench_index.py --sizes 2000 10000

bench-serve: install
	$(BIN)/python benchmarks/bench_serve.py --items 100000

bench-open: install kubo
	$(BIN)/pip install -q '.[bench]'
	$(BIN)/python benchmarks/bench_open.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build dist *.egg-info native/target
