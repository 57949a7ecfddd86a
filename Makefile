# aioctx: build, test and CI entry points. See README.md.
#
#   make          build the library (release staticlib + cdylib) and the
#                 examples, then run the demo examples/hello-bh.c
#   make test     cargo test, doc checks, every c-tests/test-*.c program (TAP),
#                 install + pkg-config/CMake/Meson consumers
#   make help     list the targets
#
# Missing Debian packages are installed with apt-get (see `deps`).
# Variables meant to be overridden on the command line are marked (override).

.DEFAULT_GOAL := all
SHELL := /bin/bash
.DELETE_ON_ERROR:

CARGO ?= cargo
# The toolchain for TSan (-Zsanitizer, -Zbuild-std) and Miri. (override)
NIGHTLY ?= +nightly
# CC: make's default (cc); the scripts get it from the environment.
export CC CXX
BUILD := build

RELEASE_LIB := target/release/libaioctx.a
HEADER := include/aioctx.h

# Native libraries the static library needs, in this order. Obtained with
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# (rustc 1.95, x86_64 Linux/glibc; GLib/GObject come from the glib-sys and
# gobject-sys crates). `make check-link-flags` (run by CI) fails when the
# list changes; update this line and README.md then.
NATIVE_LIBS := -lgobject-2.0 -lglib-2.0 -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

# What a C program needs to link the library (`make print-link-flags`).
LINK_FLAGS := -Iinclude $(RELEASE_LIB) $(NATIVE_LIBS)

# ---------------------------------------------------------------------------
# Debian packages. `deps` installs the missing ones (scripts/ensure-deb-packages.sh;
# AIOCTX_DEPS_DRY_RUN=1 only prints what it would run).
#   pkg-config, libglib2.0-dev: GTest for c-tests/, GLib integration
#   libclang-dev: bindgen in tests/header_abi.rs (cargo test)
DEB_PACKAGES := pkg-config libglib2.0-dev libclang-dev
DEB_BENCH_PACKAGES := libuv1-dev
DEB_CALLGRIND_PACKAGES := valgrind
# The build systems of tests/consumers/ (test-consumers) and the API reference (doc).
DEB_CONSUMER_PACKAGES := cmake meson ninja-build
DEB_DOC_PACKAGES := doxygen
# libfuzzer-sys compiles libFuzzer (C++) for `make fuzz`.
DEB_FUZZ_PACKAGES := g++

# ---------------------------------------------------------------------------
# C tests (scripts/run-c-tests.sh builds, runs and counts them).
# C_TESTS: the programs, as paths or names (test-bh). C++ tests (.cc) check
# that the header works from C++. (override)
C_TESTS ?= $(sort $(wildcard c-tests/test-*.c c-tests/test-*.cc))
# Programs run once per fd-monitoring backend, with AIOCTX_FDMON set: those
# of this list that exist. (override; FDMON_TESTS= runs each program once)
FDMON_TESTS ?= $(foreach t,test-event test-fd test-timer test-poll test-signal test-stats,\
	$(if $(wildcard c-tests/$(t).c),$(t)))
FDMON_BACKENDS ?= poll epoll io_uring
# Per program run, in seconds. (override)
C_TEST_TIMEOUT ?= 300
# Non-test C files in c-tests/ (shared helpers) are linked into every program.
C_TEST_SUPPORT := $(filter-out c-tests/test-%.c,$(wildcard c-tests/*.c))

GLIB_CFLAGS = $(shell pkg-config --cflags glib-2.0 2>/dev/null)
GLIB_LIBS = $(shell pkg-config --libs glib-2.0 2>/dev/null)

C_WARN := -Wall -Wextra -Werror
C_TEST_INCLUDES = -Ic-tests -Iinclude/compat -Iinclude $(GLIB_CFLAGS)
C_TEST_CFLAGS = -std=gnu11 $(C_WARN) -g -O1 $(C_TEST_INCLUDES)
C_TEST_CXXFLAGS = -std=gnu++17 $(C_WARN) -g -O1 $(C_TEST_INCLUDES)
# -rdynamic: the library names C callbacks (dladdr) in its messages.
C_TEST_LIBS = $(NATIVE_LIBS) $(GLIB_LIBS) -lpthread -rdynamic

# Sanitizers. ASAN_TESTS / TSAN_TESTS default to C_TESTS less the names in
# ASAN_EXCLUDE / TSAN_EXCLUDE (e.g. TSAN_EXCLUDE=test-coroutine). (override)
ASAN_EXCLUDE ?=
# Every C test program runs under TSan, the coroutine ones included: the
# TSan library is built with --cfg aioctx_tsan, which announces coroutine
# stack switches to TSan (src/coroutine/tsan.rs).
TSAN_EXCLUDE ?=
without = $(foreach t,$(1),$(if $(filter $(basename $(notdir $(t))),$(2)),,$(t)))
ASAN_TESTS ?= $(call without,$(C_TESTS),$(ASAN_EXCLUDE))
TSAN_TESTS ?= $(call without,$(C_TESTS),$(TSAN_EXCLUDE))
ASAN_FDMON_BACKENDS ?= $(FDMON_BACKENDS)
TSAN_FDMON_BACKENDS ?= $(FDMON_BACKENDS)
ASAN_TIMEOUT ?= 600
TSAN_TIMEOUT ?= 900
ASAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence, which
# the compat headers' smp_mb() & co. use (as QEMU's do; QEMU passes the same).
TSAN_CFLAGS := -fsanitize=thread -Wno-tsan
# GSlice off so that LeakSanitizer sees GLib's allocations as plain mallocs.
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	G_SLICE=always-malloc G_DEBUG=gc-friendly
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
# TSan-instrumented library: std rebuilt with the sanitizer (nightly).
TSAN_TARGET := x86_64-unknown-linux-gnu
TSAN_LIB := target/tsan/$(TSAN_TARGET)/release/libaioctx.a
# Legacy symbol mangling: libtsan's symbolizer demangles it (as C++), so
# reports name Rust functions readably (aioctx::sync::thread_start::h...).
# --cfg aioctx_tsan: coroutine switches call __tsan_switch_to_fiber & co.
TSAN_RUSTFLAGS := -Zsanitizer=thread -Zunstable-options -Csymbol-mangling-version=legacy \
	--cfg aioctx_tsan
# rustc's LLVM emits __tsan_memcpy & co., which GCC 12's libtsan lacks.
TSAN_SHIM := scripts/tsan-memintrinsics.c

# ---------------------------------------------------------------------------
# Benchmarks (scripts/run-bench.sh). BENCHES: programs as paths or names. (override)
BENCHES ?= $(sort $(wildcard bench/*.c))
BENCH_RESULTS ?= bench/RESULTS.md
# Programs `make bench` runs BENCH_RANGE_RUNS times in all, appending the
# range of each row over the invocations to BENCH_RESULTS (the rows the
# open performance issues track). (override)
RANGE_BENCHES ?= async_pingpong fd_1000 bh_reschedule co_multithread
BENCH_RANGE_RUNS ?= 3
# Programs for bench-callgrind, run with AIOCTX_BENCH_CALLGRIND=1. (override)
CALLGRIND_BENCHES ?= $(BENCHES)

# The RANGE_BENCHES that this `make bench` builds.
range_benches = $(filter $(RANGE_BENCHES),$(notdir $(basename $(BENCHES))))

# c_srcs NAMES,DIR: test-bh -> DIR/test-bh.c (or .cc); paths stay as they are.
c_srcs = $(foreach t,$(1),$(if $(filter %.c %.cc %.cpp,$(t)),$(t),\
	$(firstword $(wildcard $(2)/$(t).c $(2)/$(t).cc) $(2)/$(t).c)))

RUN_C_TESTS = scripts/run-c-tests.sh \
	--libs "$(C_TEST_LIBS)" \
	$(foreach s,$(C_TEST_SUPPORT),--extra-src $(s))

.PHONY: all lib examples demo run-examples deps deps-recheck deps-bench deps-callgrind deps-consumers deps-doc \
	test cargo-test test-consumers doc check-doc-comments \
	c-tests sanitize sanitize-asan sanitize-tsan tsan-lib miri loom header \
	check-header check-link-flags check-qemu-symbols check-cdylib-exports print-link-flags bench bench-callgrind bench-stats bench-ab bench-ops stress fault-walk fuzz deps-fuzz install-test \
	install clean help FORCE

# ---------------------------------------------------------------------------
all: demo

# Each package list is checked once per checkout: a stamp under build/deps/
# named after the list (editing a list checks it again), so every `cargo
# build` through make does not call dpkg. `make deps-recheck` forgets them.
DEPS_STAMP_DIR := $(BUILD)/deps
deps_empty :=
deps_space := $(deps_empty) $(deps_empty)
deps_stamp = $(DEPS_STAMP_DIR)/$(subst $(deps_space),+,$(strip $(1)))
# deps_rule TARGET,PACKAGES,PREREQUISITE-TARGETS
define deps_rule
$(call deps_stamp,$(2)):
	@scripts/ensure-deb-packages.sh $(2)
	@mkdir -p $(DEPS_STAMP_DIR) && touch $$@
$(1): $(3) $(call deps_stamp,$(2))
endef
$(eval $(call deps_rule,deps,$(DEB_PACKAGES),))
$(eval $(call deps_rule,deps-fuzz,$(DEB_FUZZ_PACKAGES),deps))
$(eval $(call deps_rule,deps-bench,$(DEB_BENCH_PACKAGES),deps))
$(eval $(call deps_rule,deps-callgrind,$(DEB_CALLGRIND_PACKAGES),deps-bench))
$(eval $(call deps_rule,deps-consumers,$(DEB_CONSUMER_PACKAGES),deps))
$(eval $(call deps_rule,deps-doc,$(DEB_DOC_PACKAGES),))

deps-recheck:
	rm -rf $(DEPS_STAMP_DIR)

# Cargo decides what is stale; the .a is only rewritten when it changes.
lib: $(RELEASE_LIB)
$(RELEASE_LIB): FORCE | deps
	$(CARGO) build --release

# Examples may use GLib (the library links it anyway) and the compat headers.
EXAMPLE_CFLAGS = -std=gnu11 $(C_WARN) -g -O2 -pthread -Iinclude/compat $(GLIB_CFLAGS)
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))

examples: $(EXAMPLE_BINS)

$(BUILD)/examples/%: examples/%.c $(RELEASE_LIB)
	@mkdir -p $(@D)
	$(CC) $(EXAMPLE_CFLAGS) -o $@ $< $(LINK_FLAGS) -rdynamic

demo: examples
	$(BUILD)/examples/hello-bh

# Every example, each with a timeout (CI runs this to keep them working).
run-examples: examples
	@set -e; for e in $(EXAMPLE_BINS); do \
		echo "==== $$e"; timeout 60 $$e </dev/null; done

# ---------------------------------------------------------------------------
test: cargo-test check-doc-comments doc c-tests install-test test-consumers check-qemu-symbols \
	check-cdylib-exports

cargo-test: | deps
	$(CARGO) test

c-tests: $(RELEASE_LIB) | deps
	$(RUN_C_TESTS) --name c-tests --build-dir $(BUILD)/c-tests \
		--lib $(RELEASE_LIB) --cflags "$(C_TEST_CFLAGS)" --cxxflags "$(C_TEST_CXXFLAGS)" \
		--fdmon-tests "$(FDMON_TESTS)" --fdmon-backends "$(FDMON_BACKENDS)" \
		--timeout $(C_TEST_TIMEOUT) $(call c_srcs,$(C_TESTS),c-tests)

# ---------------------------------------------------------------------------
sanitize: sanitize-asan sanitize-tsan

# ASan + UBSan in the C test programs; the Rust library is the normal release
# build (ASan still checks its malloc/free through the interceptors).
sanitize-asan: $(RELEASE_LIB) | deps
	$(ASAN_ENV) $(RUN_C_TESTS) --name asan --build-dir $(BUILD)/c-tests-asan \
		--lib $(RELEASE_LIB) --cflags "$(C_TEST_CFLAGS) $(ASAN_CFLAGS)" \
		--cxxflags "$(C_TEST_CXXFLAGS) $(ASAN_CFLAGS)" \
		--fdmon-tests "$(FDMON_TESTS)" --fdmon-backends "$(ASAN_FDMON_BACKENDS)" \
		--timeout $(ASAN_TIMEOUT) $(call c_srcs,$(ASAN_TESTS),c-tests)

# build.rs rewrites include/aioctx.h here too (same bytes).
tsan-lib: | deps
	RUSTFLAGS="$(TSAN_RUSTFLAGS)" $(CARGO) $(NIGHTLY) build --release \
		-Zbuild-std=std,panic_abort --target $(TSAN_TARGET) \
		--target-dir target/tsan --lib

sanitize-tsan: tsan-lib
	$(TSAN_ENV) $(RUN_C_TESTS) --name tsan --build-dir $(BUILD)/c-tests-tsan \
		--lib $(TSAN_LIB) --cflags "$(C_TEST_CFLAGS) $(TSAN_CFLAGS)" \
		--cxxflags "$(C_TEST_CXXFLAGS) $(TSAN_CFLAGS)" \
		--extra-src $(TSAN_SHIM) \
		--fdmon-tests "$(FDMON_TESTS)" --fdmon-backends "$(TSAN_FDMON_BACKENDS)" \
		--timeout $(TSAN_TIMEOUT) $(call c_srcs,$(TSAN_TESTS),c-tests)

# ---------------------------------------------------------------------------
miri: | deps
	$(CARGO) $(NIGHTLY) miri test --lib -- mpsc:: rcu::

loom: | deps
	@test -f tests/loom_notify.rs || { \
		echo "loom: tests/loom_notify.rs does not exist: no loom model test to run" >&2; \
		exit 1; }
	RUSTFLAGS="--cfg loom" $(CARGO) test --release --test loom_notify --test loom_comutex --target-dir target/loom

# ---------------------------------------------------------------------------
# Regenerate include/aioctx.h (cargo build does too, when src/ changed).
header: | deps
	@CARGO="$(CARGO)" scripts/check-header.sh --update $(HEADER)

check-header: | deps
	@CARGO="$(CARGO)" scripts/check-header.sh $(HEADER)

# API reference: Doxygen renders include/aioctx.h (its doc comments come
# from the Rust sources) grouped like QEMU's headers, with warnings as
# errors. docs/Doxyfile, docs/groups.dox (groups, entry page) and
# docs/doc-groups.txt (name -> group, applied by scripts/doc-groups.pl).
# Fast (under a second), so `make test` runs it: an undocumented struct
# member or a broken @ref fails the test run.
DOC_DIR := $(BUILD)/doc/html
doc: | deps-doc
	@rm -rf $(DOC_DIR) && mkdir -p $(BUILD)/doc
	AIOCTX_VERSION=$(VERSION) doxygen docs/Doxyfile
	@echo "doc: open $(DOC_DIR)/index.html"

# Fails when an exported function of the header has no doc comment or a
# documented name has no group (part of `make test`; needs only perl).
check-doc-comments:
	perl scripts/doc-groups.pl --check $(HEADER)

check-link-flags: | deps
	@actual=$$($(CARGO) rustc --release --lib --crate-type staticlib -- \
		--print native-static-libs 2>&1 | sed -n 's/^note: native-static-libs: //p'); \
	if [ "$$actual" != "$(NATIVE_LIBS)" ]; then \
		echo "check-link-flags: rustc now wants '$$actual'," >&2; \
		echo "  the Makefile's NATIVE_LIBS (and README.md) say '$(NATIVE_LIBS)'" >&2; \
		exit 1; \
	fi; \
	echo "check-link-flags: NATIVE_LIBS is up to date ($(NATIVE_LIBS))"

print-link-flags:
	@echo '$(LINK_FLAGS)'

# ---------------------------------------------------------------------------
bench: $(RELEASE_LIB) | deps-bench
	scripts/run-bench.sh --lib $(RELEASE_LIB) --libs "$(NATIVE_LIBS) -lpthread -rdynamic" \
		--build-dir $(BUILD)/bench --out $(BENCH_RESULTS) \
		$(call c_srcs,$(BENCHES),bench)
	$(if $(range_benches),scripts/bench-ranges.sh --build-dir $(BUILD)/bench \
		--runs $(BENCH_RANGE_RUNS) --out $(BENCH_RESULTS) $(range_benches))
	$(MAKE) --no-print-directory bench-stats

# A/B runs (scripts/bench-ab.sh): the same programs against two libraries,
# alternately. AB_BENCHES: the programs (override); AB_ROUNDS: rounds.
AB_BENCHES ?= loop_count bh_reschedule bh_oneshot timer_mod coroutine_switch aio_wait_oneshot
AB_ROUNDS ?= 3
BENCH_AB = scripts/bench-ab.sh --libs "$(NATIVE_LIBS) -lpthread -rdynamic" --rounds $(AB_ROUNDS)
# The library with the loop metrics compiled out (--cfg aioctx_no_stats; the
# counters' updates become no-ops), for the stats-overhead run.
NOSTATS_LIB := target/nostats/release/libaioctx.a
STATS_BENCHES ?= loop_count bh_reschedule fd_1000 aio_wait_oneshot
STATS_RESULTS ?= bench/STATS-OVERHEAD.md
# The loop's operations whose instructions the counters could add to.
STATS_OPS ?= aio_poll_empty aio_poll_bh bh_resched bh_resched_blocking oneshot aio_notify

$(NOSTATS_LIB): FORCE | deps
	RUSTFLAGS="--cfg aioctx_no_stats" $(CARGO) build --release --lib --target-dir target/nostats

# What the loop metrics (aioctx_context_get_stats) cost: the library without
# them (A) against the real one (B); part of `make bench`.
bench-stats: $(RELEASE_LIB) $(NOSTATS_LIB) | deps-callgrind
	$(BENCH_AB) --a-lib $(NOSTATS_LIB) --a-include include --a-name "no stats (--cfg aioctx_no_stats)" \
		--b-lib $(RELEASE_LIB) --b-include include --b-name "with stats (release)" \
		--build-dir $(BUILD)/bench-stats --out $(STATS_RESULTS) $(call c_srcs,$(STATS_BENCHES),bench)
	{ echo; scripts/bench-ops.sh --libs "$(NATIVE_LIBS) -lpthread -rdynamic" \
		--a-lib $(NOSTATS_LIB) --a-include include --a-name "no stats" \
		--b-lib $(RELEASE_LIB) --b-include include --b-name "with stats" \
		--build-dir $(BUILD)/bench-stats-ops $(STATS_OPS); } | tee -a $(STATS_RESULTS)

# The release library of git revision REV, built in a worktree under
# $(BUILD)/ab/ (shell code: leaves its directory in $$dir and its short
# hash in $$rev).
define build_rev_lib
test -n "$(REV)" || { echo "make $@: set REV=<git revision>" >&2; exit 2; }; \
rev=$$(git rev-parse --short "$(REV)") && dir=$(BUILD)/ab/$$rev && \
{ test -d $$dir || git worktree add --detach $$dir $$rev; } && \
(cd $$dir && $(CARGO) build --release --lib)
endef

# This tree against the git revision REV (make bench-ab REV=645e626),
# wall clock, the programs run alternately.
bench-ab: $(RELEASE_LIB) | deps-bench
	$(build_rev_lib) && \
	$(BENCH_AB) --a-lib $$dir/$(RELEASE_LIB) --a-include $$dir/include --a-name "$$rev" \
		--b-lib $(RELEASE_LIB) --b-include include --b-name "this tree" \
		--build-dir $(BUILD)/bench-ab $(call c_srcs,$(AB_BENCHES),bench)

# This tree against REV in instructions per API call (bench/ops/ops.c under
# callgrind; deterministic). OPS: the operations (default: all).
bench-ops: $(RELEASE_LIB) | deps-callgrind
	$(build_rev_lib) && \
	scripts/bench-ops.sh --libs "$(NATIVE_LIBS) -lpthread -rdynamic" \
		--a-lib $$dir/$(RELEASE_LIB) --a-include $$dir/include --a-name "$$rev" \
		--b-lib $(RELEASE_LIB) --b-include include --b-name "this tree" \
		--build-dir $(BUILD)/bench-ops $(OPS)

bench-callgrind: $(RELEASE_LIB) | deps-callgrind
	scripts/run-bench.sh --callgrind --lib $(RELEASE_LIB) \
		--libs "$(NATIVE_LIBS) -lpthread -rdynamic" --build-dir $(BUILD)/bench \
		$(call c_srcs,$(CALLGRIND_BENCHES),bench)

# ---------------------------------------------------------------------------
PREFIX ?= /usr/local
DESTDIR ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SHARED_DIR := $(BUILD)/shared
# NATIVE_LIBS as a CMake list (gobject-2.0;glib-2.0;...) for aioctxConfig.cmake.
empty :=
space := $(empty) $(empty)
NATIVE_LIBS_CMAKE := $(subst $(space),;,$(strip $(patsubst -l%,%,$(NATIVE_LIBS))))
SHARED_LIB := $(SHARED_DIR)/libaioctx.so.$(VERSION)

# The installed shared library is linked from the static one (see the
# script). Cargo's cdylib (CARGO_CDYLIB) exports the same names, the
# functions written in C included (Rust trampolines, src/ffi/c_exports.rs);
# `make check-cdylib-exports` keeps it so.
CARGO_CDYLIB := target/release/libaioctx.so
$(SHARED_LIB): $(RELEASE_LIB) scripts/build-shared-lib.sh
	scripts/build-shared-lib.sh $(RELEASE_LIB) $(SHARED_DIR) $(VERSION) "$(GLIB_LIBS) $(NATIVE_LIBS)"

# libaioctx.a, libaioctx.so (SONAME libaioctx.so.0), include/aioctx.h, the
# compat tree under include/aioctx/compat/, aioctx.pc (shared) and
# aioctx-static.pc (names libaioctx.a) for pkg-config and Meson, and the
# CMake package lib/cmake/aioctx/ (targets aioctx::aioctx, aioctx::aioctx_static).
install: $(RELEASE_LIB) $(SHARED_LIB)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/aioctx
	install -m 644 $(RELEASE_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libaioctx.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libaioctx.so.$(firstword $(subst ., ,$(VERSION)))
	ln -sf libaioctx.so.$(firstword $(subst ., ,$(VERSION))) $(DESTDIR)$(PREFIX)/lib/libaioctx.so
	install -m 644 $(HEADER) $(DESTDIR)$(PREFIX)/include/
	cp -R include/compat $(DESTDIR)$(PREFIX)/include/aioctx/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
		-e 's|@LIBS_PRIVATE@|$(NATIVE_LIBS)|' aioctx.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/aioctx.pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
		-e 's|@NATIVE_LIBS@|$(NATIVE_LIBS)|' aioctx-static.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/aioctx-static.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/aioctx
	for f in aioctxConfig aioctxConfigVersion; do \
		sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(VERSION_MAJOR)|g' \
			-e 's|@MINOR@|$(VERSION_MINOR)|g' -e 's|@NATIVE_LIBS_CMAKE@|$(NATIVE_LIBS_CMAKE)|g' \
			cmake/$$f.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/aioctx/$$f.cmake || exit 1; \
	done

# Installs into a temporary prefix and builds programs with pkg-config only.
# Every link-level name of QEMU 10.2's event loop (tests/data/qemu-abi-symbols.txt)
# is defined in the archive; known gaps are listed in tests/data/qemu-abi-missing.txt.
check-qemu-symbols: $(RELEASE_LIB)
	scripts/check-qemu-symbols.sh $(RELEASE_LIB)

# Cargo's cdylib is a usable shared library: it exports what the installed
# one does (the C-written functions too) and a C program linked against it
# alone calls them; the C objects define no name it could miss.
check-cdylib-exports: $(RELEASE_LIB) $(SHARED_LIB)
	CFLAGS_EXTRA="$(GLIB_CFLAGS)" scripts/check-cdylib-exports.sh \
		$(CARGO_CDYLIB) $(SHARED_LIB) $(RELEASE_LIB)

install-test: $(RELEASE_LIB) | deps
	scripts/test-install.sh

# Installs into a temp prefix and builds tests/consumers/consumer.c with
# pkg-config, CMake (find_package) and Meson (dependency()), shared and static.
test-consumers: $(RELEASE_LIB) | deps-consumers
	scripts/test-consumers.sh

# Fault injection (scripts/fault-walk.sh): the workload c-tests/fault/workload.c
# rerun with each eventfd/epoll_create1/pipe/pthread_create/big-mmap/
# io_uring_setup/io_uring_enter call and each allocation of the library
# (malloc from the executable's text) failing in turn (LD_PRELOAD shim
# c-tests/fault/fault-inject.c), once per fd monitor; then again, malloc
# aside, with the workload built with ASAN_CFLAGS: runs that succeed or
# report an Error must also be leak-free (LeakSanitizer).
fault-walk: $(RELEASE_LIB) | deps
	scripts/fault-walk.sh $(RELEASE_LIB) $(BUILD)/fault-walk "$(C_TEST_CFLAGS)" "$(C_TEST_LIBS)" "$(ASAN_CFLAGS)"

# Coverage-guided fuzzing (scripts/fuzz.sh): libFuzzer drives the model
# test's operation sequence (fuzz/fuzz_targets/api_sequence.rs, sharing
# tests/support/model/) for FUZZ_SECONDS (1..120), seeded from
# fuzz/corpus/api_sequence/; fails on any crash, leak or mismatch. Built
# with `cargo +nightly build` and cargo-fuzz's flags rather than cargo-fuzz,
# whose install from source takes over a minute on a clean machine.
FUZZ_SECONDS ?= 60
fuzz: | deps-fuzz
	CARGO="$(CARGO)" NIGHTLY="$(NIGHTLY)" scripts/fuzz.sh $(FUZZ_SECONDS) $(BUILD)/fuzz

# Long stress and model runs (the short versions run in `make test`):
# 8 threads x 1M cross-thread schedules, and 100k random API sequences per
# fd backend checked against the reference model in tests/model.rs.
STRESS_ITERS ?= 1000000
MODEL_CASES ?= 100000
stress: $(RELEASE_LIB) | deps
	AIOCTX_STRESS_ITERS=$(STRESS_ITERS) $(RUN_C_TESTS) --name stress --build-dir $(BUILD)/c-tests \
		--lib $(RELEASE_LIB) --cflags "$(C_TEST_CFLAGS)" --timeout 900 c-tests/test-stress.c
	for b in $(FDMON_BACKENDS); do \
		AIOCTX_FDMON=$$b AIOCTX_MODEL_CASES=$(MODEL_CASES) $(CARGO) test --release --test model || exit 1; \
	done

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

help:
	@echo 'make [all]          release library + examples, run build/examples/hello-bh'
	@echo 'make run-examples   run every examples/*.c program'
	@echo 'make test           cargo test + C tests (C_TESTS=..., FDMON_TESTS=...)'
	@echo 'make sanitize       C tests under ASan+UBSan and TSan (ASAN_TESTS, TSAN_TESTS)'
	@echo 'make miri           BH queue and RCU unit tests under Miri (nightly)'
	@echo 'make loom           loom model tests tests/loom_notify.rs, tests/loom_comutex.rs'
	@echo 'make header         regenerate include/aioctx.h'
	@echo 'make doc            API reference with Doxygen: $(DOC_DIR)/index.html'
	@echo 'make check-doc-comments  fail if an exported function has no doc comment or group'
	@echo 'make check-header   fail if include/aioctx.h is not what build.rs generates'
	@echo 'make check-link-flags  fail if NATIVE_LIBS no longer matches rustc'
	@echo 'make print-link-flags  flags to link a C program against the library'
	@echo 'make bench          run bench/*.c, write $(BENCH_RESULTS)'
	@echo 'make stress         long stress test and model-based test runs'
	@echo 'make fuzz           fuzz the API sequence against the model for FUZZ_SECONDS (60)'
	@echo 'make fault-walk     fault injection: each resource call of a workload fails in turn (+ ASan/LSan pass)'
	@echo 'make bench-callgrind  bench programs under callgrind (instruction counts)'
	@echo 'make bench-stats    what the loop metrics cost (A/B against a build without them)'
	@echo 'make bench-ab REV=R this tree against git revision R, A/B (AB_BENCHES, AB_ROUNDS)'
	@echo 'make bench-ops REV=R instructions per API call, this tree against R (callgrind; OPS)'
	@echo 'make deps           install missing Debian packages ($(DEB_PACKAGES))'
	@echo 'make deps-recheck   forget which package lists were checked (build/deps/ stamps)'
	@echo 'make install        PREFIX=$(PREFIX): libaioctx.a/.so, headers, compat tree, .pc files, CMake package'
	@echo 'make check-qemu-symbols  nm the archive for every QEMU 10.2 event-loop name'
	@echo 'make check-cdylib-exports  cargo'"'"'s libaioctx.so exports what the installed one does'
	@echo 'make install-test   install into a temp prefix, build examples with pkg-config'
	@echo 'make test-consumers install into a temp prefix, build a consumer with pkg-config, CMake, Meson'
	@echo 'make clean          remove build/ and target/'

FORCE:
