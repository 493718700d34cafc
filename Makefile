# The two commands of the README:
#   make demo   installs what is missing, builds, runs the cross-process demo
#   make test   installs what is missing, builds, runs every test
# Both are idempotent: a second run installs nothing and rebuilds only changes.

PY      := $(CURDIR)/.venv/bin/python
BUILD   := build/cmake
ASAN    := build/asan
FUZZ    := build/fuzz
TSAN    := build/tsan
JOBS    ?= $(shell nproc)
CMAKE_FLAGS := -G Ninja -DBRIDGE_WERROR=ON
# tests/cpp/integration/load_test.cpp under a sanitizer (10-100x slower): fewer
# connections and cycles, a shorter soak.
SAN_LOAD := SHMBRIDGE_LOAD_CLIENTS=20 SHMBRIDGE_LOAD_CYCLES=50 SHMBRIDGE_SOAK_SECONDS=5 \
            SHMBRIDGE_RACE_ROUNDS=20 SHMBRIDGE_TIME_SCALE=10

.PHONY: all deps configure build demo test test-cpp test-asan test-tsan fuzz install-py format format-check clean bench

all: build

deps:
	@./scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DBRIDGE_BUILD_PYTHON=ON \
	  -DPython_EXECUTABLE=$(PY) -Dnanobind_DIR=$$($(PY) -m nanobind --cmake_dir) >/dev/null

# Everything: libraries, tools, the extension, every test and benchmark.
build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# The demo builds only what it runs (no tests, no benchmarks).
DEMO_TARGETS := bridged bridgectl frames_peer _pybridge pybridge_python_files
demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target $(DEMO_TARGETS)
	@PYTHONPATH=$(BUILD)/python $(PY) examples/python/demo.py $(BUILD)/bin

# GoogleTest (unit + integration against a real daemon, the load test and a
# 15 s soak), pytest (Python API, cross-process with a C++ peer, CLI), then the
# C++ suite and pytest again under ASan+UBSan, the concurrency tests under
# TSan, then a bounded fuzzing run.
test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j 2
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan
	@$(MAKE) --no-print-directory fuzz

# ASan+UBSan: the C++ suite (load_test with a smaller load), then pytest with
# the sanitized bridged, bridgectl and bridge_peer (BRIDGE_BIN_DIR), so every
# Python and CLI test also runs the daemon and the CLI under the sanitizers.
# The Python extension is the normal build's (python itself is not
# sanitized). A sanitizer report ends the program with status 1 (UBSan too:
# -fno-sanitize-recover), which the daemon fixtures and the tests that run
# bridgectl or bridge_peer check; tests/cli/test_sanitized_binaries.py checks
# (SHMBRIDGE_EXPECT_SANITIZED) that the binaries really are the sanitized ones.
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=1
test-asan: build
	@cmake -S . -B $(ASAN) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug \
	  -DBRIDGE_SANITIZE=address,undefined >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)
	@$(ASAN_ENV) $(SAN_LOAD) ctest --test-dir $(ASAN) --output-on-failure -j 2
	@$(ASAN_ENV) SHMBRIDGE_EXPECT_SANITIZED=address,undefined BRIDGE_BIN_DIR=$(CURDIR)/$(ASAN)/bin \
	  PYTHONPATH=$(CURDIR)/$(BUILD)/python \
	  $(PY) -m pytest -q -rs -p no:cacheprovider tests/python tests/cli

# The tests labelled `concurrency` (mutation, events, load + soak) under
# ThreadSanitizer. TSan sees the threads of one process (the daemon's io and
# commit-watcher threads, a test's client threads), not other processes
# sharing the segments; tests/tsan.supp says what it is told to ignore.
# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence; the
# fences (the seqlocks in libbridge) order accesses against other processes,
# which TSan does not see anyway. Every other warning is still an error.
# ASLR is off for the run (setarch -R): this TSan runtime can reject the
# high-entropy mmap addresses of recent kernels ("unexpected memory mapping").
test-tsan: deps
	@cmake -S . -B $(TSAN) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug \
	  -DBRIDGE_SANITIZE=thread -DCMAKE_CXX_FLAGS=-Wno-tsan >/dev/null
	@cmake --build $(TSAN) -j $(JOBS) --target bridged mutation_test events_test load_test \
	  segment_threads_test stream_test
	@TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" $(SAN_LOAD) \
	  setarch $$(uname -m) -R ctest --test-dir $(TSAN) --output-on-failure -j 2 -L concurrency

# The request fuzzer (fuzz/README.md): clang, libFuzzer, ASan+UBSan; only
# libbridge and bridged_core are built. Replays fuzz/regressions/, then fuzzes
# FUZZ_RUNS executions (at most FUZZ_SECONDS) from fuzz/corpus/ plus what
# earlier runs found ($(FUZZ)/corpus). A crash input lands in $(FUZZ)/artifacts/.
FUZZ_RUNS    ?= 20000
FUZZ_SECONDS ?= 300
FUZZ_FLAGS   := -close_fd_mask=2 -detect_leaks=1 -timeout=10
fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DBRIDGE_BUILD_FUZZ=ON -DBRIDGE_BUILD_TESTS=OFF -DBRIDGE_BUILD_BENCH=OFF \
	  -DBRIDGE_SANITIZE=address,undefined >/dev/null
	@cmake --build $(FUZZ) -j $(JOBS) --target request_fuzzer
	@mkdir -p $(FUZZ)/corpus $(FUZZ)/artifacts
	@$(FUZZ)/bin/request_fuzzer $(FUZZ_FLAGS) fuzz/regressions/* >$(FUZZ)/regressions.log 2>&1 \
	  || { tail -n 60 $(FUZZ)/regressions.log; exit 1; }
	@echo "fuzz: $$(ls fuzz/regressions | wc -l) regression inputs pass"
	@$(FUZZ)/bin/request_fuzzer $(FUZZ_FLAGS) -dict=fuzz/request.dict -max_len=8192 -runs=$(FUZZ_RUNS) \
	  -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(FUZZ)/artifacts/ \
	  $(FUZZ)/corpus fuzz/corpus >$(FUZZ)/fuzz.log 2>&1 \
	  || { tail -n 80 $(FUZZ)/fuzz.log; exit 1; }
	@grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added))' \
	  $(FUZZ)/fuzz.log | sed 's/^/fuzz: /'

# Benchmarks (not tests; bench/README.md): builds only what they run, makes
# build/bench-venv with the peers pinned in bench/requirements.txt (once; again
# when the file changes), then bench/run.py starts private daemons (bridged,
# vineyardd), runs every section and writes bench/RESULTS.md and
# bench/results.png. A first look: make bench BENCH_ARGS=--quick
BENCH_VENV    := build/bench-venv
BENCH_TARGETS := bridged bridgectl _pybridge pybridge_python_files bridge_wake_latency \
                 bridge_attach_bench bridge_stream_bench
BENCH_ARGS    ?=
$(BENCH_VENV)/.installed: bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install -q -r bench/requirements.txt
	@touch $@

bench: configure $(BENCH_VENV)/.installed
	@cmake --build $(BUILD) -j $(JOBS) --target $(BENCH_TARGETS)
	@PYTHONPATH=$(BUILD)/python $(BENCH_VENV)/bin/python bench/run.py --bin-dir $(BUILD)/bin $(BENCH_ARGS)

# What a user does: builds a wheel with scikit-build-core and installs the
# package plus the bridged and bridgectl commands into .venv.
install-py: deps
	@$(PY) -m pip install -q .

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build
