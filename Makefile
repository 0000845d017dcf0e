# The two commands of the README:
#   make run    install dependencies, build, run the gateway (etc/postern.conf)
#   make test   install dependencies (with test peers), build, run every test
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
CONFIG ?= etc/postern.conf
# Debian's interpreter: the test libraries come from Debian packages.
PYTHON ?= /usr/bin/python3

.PHONY: all deps test-deps bench-deps build asan fuzz-build run test unit fuzz clean

all: build

deps:
	sh scripts/install-deps.sh

test-deps:
	WITH_TEST_PKGS=1 sh scripts/install-deps.sh

# The peers of the benchmarks (bench/README.md): SpamAssassin, Rspamd, Redis.
bench-deps:
	WITH_TEST_PKGS=1 WITH_BENCH_PKGS=1 sh scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) -Dwerror=true

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

fuzz-build: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

run: deps build
	./$(BUILD)/postern serve -c $(CONFIG)

# Fuzz each parser for FUZZ_SECONDS (default 60) starting from its seed corpus.
fuzz: test-deps fuzz-build
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $${FUZZ_SECONDS:-60}

test: test-deps build asan fuzz-build
	POSTERN_BIN=$(CURDIR)/$(ASAN_BUILD)/postern POSTERN_UNIT=$(CURDIR)/$(ASAN_BUILD)/unit-tests \
	POSTERN_FUZZ_DIR=$(CURDIR)/$(FUZZ_BUILD) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
