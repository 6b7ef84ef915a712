# The two-command contract (README): `make demo` and `make test` each install dependencies, configure, build
# (Ninja, Release, ccache) into build/ and run. Everything else here is a convenience for developers.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
NPROC := $(shell nproc)
CMAKE_ARGS ?=
PYTHON := /usr/bin/python3
WFM := $(BUILD_DIR)/bin/wfm

.PHONY: all deps configure build test test-cpp test-python demo demo-quick bench asan clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_ARGS)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(NPROC)

test: build
	./scripts/run-tests.sh $(BUILD_DIR)

demo: build
	./scripts/demo.sh $(BUILD_DIR)

demo-quick: build
	./scripts/demo.sh $(BUILD_DIR) --quick

bench: build
	./scripts/run-benchmarks.sh $(BUILD_DIR)

# AddressSanitizer/LeakSanitizer build of the core tests (video IO and file parsers on bad input).
asan: deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWFM_SANITIZE=ON \
	  -DWFM_BUILD_PYTHON=OFF -DWFM_BUILD_BENCH=OFF -DPython3_EXECUTABLE=$(PYTHON)
	cmake --build build-asan -j $(NPROC) --target wfm_core_asan_tests wfm_core_tests wfm
	cd build-asan && ctest -L asan --output-on-failure -j $(NPROC)

clean:
	rm -rf $(BUILD_DIR)
