# longview build. Plain make; see README.md ("Building") and docs/testing.md.
#
#   make                 release build in build/release (library, longview CLI, lv_test)
#   make BUILD=asan      the same with AddressSanitizer + UndefinedBehaviorSanitizer in build/asan
#   make BUILD=emu512 emu512-check   the AVX-512 kernels' tests on any AVX2 CPU (SIMDe, src/kernels/emu512.h)
#   make test            release tests, the whole suite again under ASan+UBSan, then emu512-check
#   make fuzz            libFuzzer targets (clang) in build/fuzz
#   make demo            the README's main job (scripts/demo.sh)
#   make install         the tool, longview.h, liblongview.a / .so and longview.pc under PREFIX (/usr/local), DESTDIR
#   make shared          liblongview.so alone
#   make bench-kernels   the per-type kernel benchmark (bench/kernels/RESULTS.md), not part of make test
#   make bench-tgemm     the trainer's GEMM kernels, GFLOP/s (bench/train/tgemm_bench.c)
#   make bench-attn      the attention kernel micro-benchmark (bench/attn), not part of make test
#   make bench-kv        KV cache memory per attention mode at 32k and 128k tokens (bench/kv)
#   make bench-prepack   packed prefill against one prompt per step through the library (bench/serve/prepack_ab.c)
#
# The library is compiled for baseline x86-64 (or whatever the compiler targets): SIMD kernels
# live in files named *_avx2.c / *_avx512.c that get their own -m flags and are chosen at run
# time from the CPU's features, so one binary runs everywhere.

BUILD ?= release
O := build/$(BUILD)
CC ?= cc
PKG_CONFIG ?= pkg-config

# System libraries found with pkg-config (Debian -dev packages; see docs/dependencies.md).
PKGS ?= libavformat libavcodec libswscale libavutil libpcre2-8 libpcre2-32 jansson

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wno-missing-field-initializers \
        -Wformat=2 -Wno-format-truncation -Wvla -Werror=implicit-function-declaration -Werror=incompatible-pointer-types
BASE_CFLAGS := -std=c11 $(WARN) -Iinclude -Isrc -pthread -D_FILE_OFFSET_BITS=64 -MMD -MP

ifeq ($(BUILD),release)
  MODE_CFLAGS := -O3 -g
  MODE_LDFLAGS :=
else ifeq ($(BUILD),asan)
  MODE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(BUILD),fuzz)
  CC := clang
  MODE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wno-unknown-warning-option
  MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(BUILD),emu512)
  # the AVX-512 kernels emulated on AVX2 through SIMDe (src/kernels/emu512.h), for their tests on
  # CPUs without AVX-512 (make emu512-check); a test build, never a release
  MODE_CFLAGS := -O2 -g -DLV_EMU_AVX512
  MODE_LDFLAGS :=
else ifeq ($(BUILD),debug)
  MODE_CFLAGS := -O0 -g
  MODE_LDFLAGS :=
else
  $(error unknown BUILD=$(BUILD): use release, asan, emu512 or debug)
endif

ifneq ($(strip $(PKGS)),)
  PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
  PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS))
endif
# Libraries only the longview tool links, not the library (liblongview and longview.pc do not
# depend on them): libmicrohttpd for `longview serve` (docs/dependencies.md).
TOOL_PKGS ?= libmicrohttpd
ifneq ($(strip $(TOOL_PKGS)),)
  TOOL_PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(TOOL_PKGS))
  TOOL_PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(TOOL_PKGS))
endif

CFLAGS_ALL := $(BASE_CFLAGS) $(MODE_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm -pthread $(LDLIBS)
LDFLAGS_ALL := $(MODE_LDFLAGS) $(LDFLAGS)

# Sources are found by pattern: a new file or folder under src/ (one folder per module,
# docs/architecture.md), tools/ or tests/ needs no edit here.
LIB_SRC := $(sort $(wildcard src/*/*.c))
TOOL_SRC := $(sort $(wildcard tools/*.c tools/*/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c tests/*/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(O)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(O)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(O)/%.o)
# library headers are included by module path ("kv/kv.h", -Isrc); the tests' helpers from tests/
$(TEST_OBJ): CFLAGS_ALL += -Itests
$(TOOL_OBJ): CFLAGS_ALL += $(TOOL_PKG_CFLAGS)

# per-file SIMD flags
AVX2_FLAGS := -mavx2 -mfma -mf16c -mbmi2
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512dq -mavx512vl
ifeq ($(BUILD),emu512)
  AVX512_FLAGS := $(AVX2_FLAGS) -include src/kernels/emu512.h
endif
# VNNI and BF16 instructions are not implied by the avx512 level: functions that use them carry
# __attribute__((target("avx512vnni"))) / ("avx512bf16") and are chosen only when the CPU has them.

.PHONY: all test check emu512-check fuzz fuzz-bins demo clean bench-attn bench-kernels bench-kv bench-prepack bench-tgemm shared install uninstall install-check
all: $(O)/liblongview.a $(O)/longview $(O)/lv_test $(O)/lvbench

# V=1 shows the full commands
ifeq ($(V),1)
  Q :=
  say = @true
else
  Q := @
  say = @echo "  $(1) $(2)"
endif

$(O)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) $(AVX2_FLAGS) -c $< -o $@

$(O)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) $(AVX512_FLAGS) -c $< -o $@

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(O)/liblongview.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# ---- the shared library and installation ----
# liblongview.so.X.Y.Z (SONAME liblongview.so.X) from position-independent copies of the library's
# objects in $(O)/pic (the static library and the tools keep their own, so their code is unchanged),
# exporting exactly the functions include/longview.h declares (a version script made from it).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
VERSION := $(shell sed -n 's/^\#define LV_VERSION_STRING "\(.*\)"/\1/p' include/longview.h)
SONAME := liblongview.so.$(firstword $(subst ., ,$(VERSION)))
SHLIB := $(O)/liblongview.so.$(VERSION)
PIC_OBJ := $(LIB_SRC:%.c=$(O)/pic/%.o)

$(O)/pic/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(call say,CC,$< [pic])
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC $(AVX2_FLAGS) -c $< -o $@

$(O)/pic/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(call say,CC,$< [pic])
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC $(AVX512_FLAGS) -c $< -o $@

$(O)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$< [pic])
	$(Q)$(CC) $(CFLAGS_ALL) -fPIC -c $< -o $@

$(O)/longview.map: include/longview.h
	@mkdir -p $(dir $@)
	{ echo "LONGVIEW_$(firstword $(subst ., ,$(VERSION))) {"; echo "  global:"; \
	  $(CC) -E -P -Iinclude include/longview.h | grep -oE '\blv_[a-z0-9_]+ *\(' | sed 's/ *(//' | sort -u | sed 's/.*/    &;/'; \
	  echo "  local: *;"; echo "};"; } > $@

$(SHLIB): $(PIC_OBJ) $(O)/longview.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(O)/longview.map -Wl,--no-undefined $(LDFLAGS_ALL) \
	  -o $@ $(PIC_OBJ) $(LDLIBS_ALL)

shared: $(SHLIB)

# make install [PREFIX=/usr/local] [DESTDIR=...]: the longview tool, longview.h, liblongview.a,
# liblongview.so with its SONAME links, and for pkg-config longview.pc (the shared library) and
# longview-static.pc (liblongview.a, with the libraries it needs linked as shared ones).
install: $(O)/longview $(O)/liblongview.a $(SHLIB)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(O)/longview $(DESTDIR)$(BINDIR)/longview
	install -m 644 include/longview.h $(DESTDIR)$(INCLUDEDIR)/longview.h
	install -m 644 $(O)/liblongview.a $(DESTDIR)$(LIBDIR)/liblongview.a
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/liblongview.so.$(VERSION)
	ln -sf liblongview.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/liblongview.so
	for pc in longview longview-static; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    $$pc.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/$$pc.pc || exit 1; \
	done
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/longview $(DESTDIR)$(INCLUDEDIR)/longview.h $(DESTDIR)$(LIBDIR)/liblongview.a \
	  $(DESTDIR)$(LIBDIR)/liblongview.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/liblongview.so \
	  $(DESTDIR)$(PKGCONFIGDIR)/longview.pc $(DESTDIR)$(PKGCONFIGDIR)/longview-static.pc

# Install into a scratch root and build the README's library example against it with pkg-config,
# shared and static (tests/install_test.sh). Part of make test (release build).
install-check:
	rm -rf $(O)/tmp/install
	$(MAKE) install DESTDIR=$(CURDIR)/$(O)/tmp/install PREFIX=/usr/local
	tests/install_test.sh $(CURDIR)/$(O)/tmp/install /usr/local $(O)

$(O)/longview: $(TOOL_OBJ) $(O)/liblongview.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(TOOL_OBJ) $(O)/liblongview.a $(TOOL_PKG_LIBS) $(LDLIBS_ALL)

# lvbench, the serving load generator (bench/serve/lvbench.c, docs/server.md "Measuring"): a
# program of its own, not a longview command; jansson is its only library
$(O)/lvbench: bench/serve/lvbench.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(shell $(PKG_CONFIG) --libs jansson) -lm

# the tools' data code that has unit tests of its own (tests/tools/: the V-NIAH data, docs/vniah.md),
# linked into lv_test with what it reports errors through
TEST_TOOL_OBJ := $(O)/tools/common/vniah.o $(O)/tools/common/cli.o
$(O)/lv_test: $(TEST_OBJ) $(TEST_TOOL_OBJ) $(O)/liblongview.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_OBJ) $(TEST_TOOL_OBJ) $(O)/liblongview.a $(LDLIBS_ALL)

# Check the source layout (no cycle between folders or files, scripts/check-layout.sh), then run
# the unit tests and the command-line tests of this build.
# JOBS: tests (and CLI scripts) run at once, one per core by default
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
check: all
	scripts/check-layout.sh $(O)
	LV_TEST_TMPDIR=$(O)/tmp LV_TEST_JOBS=$(JOBS) $(O)/lv_test
	LV_TEST_TMPDIR=$(O)/tmp LV_TEST_JOBS=$(JOBS) tests/cli_test.sh $(O)/longview

# The whole suite: release, then everything again under ASan+UBSan (LV_TEST_QUICK shrinks the
# few long cases there; every test still runs).
# (check and install-check are separate makes, one after the other: under -j one make would run both
# at once, and install-check would relink the binary the CLI tests are running)
test:
	$(MAKE) BUILD=release check
	$(MAKE) BUILD=release install-check
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LV_TEST_QUICK=1 $(MAKE) BUILD=asan check
	$(MAKE) BUILD=emu512 emu512-check

# The AVX-512 kernels on a CPU without AVX-512 (docs/testing.md): the emu512 build compiles the
# *_avx512.c files against SIMDe and reports AVX-512 (with VNNI and BF16) as the best level, so the
# tests that compare every level with the references, and the golden models of the types whose
# AVX-512 kernels came last, run the AVX-512 code. Emulated: slow, so only these tests.
EMU512_TESTS := rmsnorm rope swiglu geglu table_ attention_ matmul_ tiled_ quest_ gated_ quantized_attention qkernels_ qpack_ \
                train_gemm train_exp train_attention_tiled golden_llama-iq4_nl golden_smollm3-q2_k golden_gemma3-q3_k
emu512-check: $(O)/lv_test
	LV_TEST_TMPDIR=$(O)/tmp LV_TEST_JOBS=$(JOBS) $(O)/lv_test $(EMU512_TESTS)

FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
fuzz:
	$(MAKE) BUILD=fuzz fuzz-bins
fuzz-bins: $(FUZZ_BIN)
build/fuzz/fuzz_%: build/fuzz/fuzz/fuzz_%.o build/fuzz/liblongview.a
	clang $(MODE_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)

# micro-benchmark of the attention kernel (not part of the tests)
# KV cache memory at 32k / 128k tokens per attention mode (bench/kv)
bench-kv: $(O)/kv_memory
$(O)/kv_memory: bench/kv/kv_memory.c $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(O)/liblongview.a $(LDLIBS_ALL)

# packed prefill against one prompt per step, through the library (bench/serve/prepack_ab.c, bench/NOTES.md)
bench-prepack: $(O)/prepack_ab
$(O)/prepack_ab: bench/serve/prepack_ab.c $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(O)/liblongview.a $(LDLIBS_ALL)

# the trainer-initialised text + mmproj pair for scripts/gen-tvision-golden.sh (tests/train/tvpair.h;
# the test writes the same pair in-process)
$(O)/tvpair_gen: tests/train/gen/tvpair_gen.c $(O)/tests/train/tvpair.o $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(O)/tests/train/tvpair.o $(O)/liblongview.a $(LDLIBS_ALL)

# the trainer's GEMM kernels, GFLOP/s at its shapes (bench/train/tgemm_bench.c, docs/train.md)
bench-tgemm: $(O)/tgemm_bench
$(O)/tgemm_bench: bench/train/tgemm_bench.c $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(O)/liblongview.a $(LDLIBS_ALL)

bench-attn: $(O)/attn_bench
$(O)/attn_bench: bench/attn/attn_bench.c $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(O)/liblongview.a $(LDLIBS_ALL)

demo: all
	scripts/demo.sh $(O)/longview

bench-kernels: $(O)/bench_kernels $(O)/repack_experiment
$(O)/bench_kernels: bench/kernels/bench_kernels.c $(O)/liblongview.a
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(O)/liblongview.a $(LDLIBS_ALL)
$(O)/repack_experiment: bench/kernels/repack_experiment.c
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< -lm

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(O)/lvbench.d
