# Two commands: `make run` and `make test` (README.md). Both install what is
# missing from Debian's archive first.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
PY ?= /usr/bin/python3

.PHONY: all deps test-deps build build-asan run test unit integration fuzz bench clean

all: build

deps:
	./scripts/install-deps.sh

test-deps:
	./scripts/install-deps.sh --test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# ASan + UBSan build with clang; it also links the libFuzzer targets.
$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DMOAT_SANITIZE=ON -DMOAT_FUZZ=ON

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j$(JOBS)

run: build
	./scripts/run-default.sh

unit: build
	cd $(BUILD) && ctest --output-on-failure

integration: build
	MOAT_BIN=$(CURDIR)/$(BUILD)/bin $(PY) -m pytest -q tests/integration

# ctest -j: the fuzz runs overlap the unit test instead of waiting for it.
test: test-deps build build-asan
	cd $(BUILD) && ctest -j$(JOBS) --output-on-failure
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest -j$(JOBS) --output-on-failure
	MOAT_BIN=$(CURDIR)/$(BUILD)/bin MOAT_ASAN_BIN=$(CURDIR)/$(ASAN_BUILD)/bin \
	  $(PY) -m pytest -q -p no:cacheprovider --timeout=300 tests/integration

fuzz: build-asan
	./tests/fuzz/run-all.sh $(ASAN_BUILD)/bin $(or $(SECONDS_EACH),60)

bench: build
	./bench/relay

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
