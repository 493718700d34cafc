# The two commands of the README:
#   make demo   installs what is missing, builds, runs the cross-process demo
#   make test   installs what is missing, builds, runs every test
# Both are idempotent: a second run installs nothing and rebuilds only changes.

PY      := $(CURDIR)/.venv/bin/python
BUILD   := build/cmake
ASAN    := build/asan
JOBS    ?= $(shell nproc)
CMAKE_FLAGS := -G Ninja -DBRIDGE_WERROR=ON

.PHONY: all deps build demo test test-cpp test-asan install-py format format-check clean bench

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DBRIDGE_BUILD_PYTHON=ON \
	  -DPython_EXECUTABLE=$(PY) -Dnanobind_DIR=$$($(PY) -m nanobind --cmake_dir) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@PYTHONPATH=$(BUILD)/python $(PY) examples/python/demo.py $(BUILD)/bin

# GoogleTest (unit + integration against a real daemon), pytest (Python API,
# cross-process with a C++ peer, CLI), then the C++ suite again under ASan+UBSan.
test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j 2
	@$(MAKE) --no-print-directory test-asan

test-asan: deps
	@cmake -S . -B $(ASAN) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug \
	  -DBRIDGE_SANITIZE=address,undefined >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN) --output-on-failure -j 2

# Wake-latency benchmark (not a test, about 40 s): futex and pipe floors,
# shmbridge C++ and Python side by side in one run; see bench/README.md.
bench: build
	@PYTHONPATH=$(BUILD)/python $(PY) bench/wake_latency.py --bin-dir $(BUILD)/bin

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
