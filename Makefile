# sparq: `make` builds ./sparq, `make test` runs the Criterion suite, `make asan` runs the same
# suite under AddressSanitizer + UBSan, `make run` is the README's main command, `make bench`
# prints throughput and peak memory (stories260K, opt-tiny and mamba-tiny, then stories3M with its
# sgemm peak and one SparseGPT compression, then a Mamba-130M-shaped model with the scan's share),
# tokenizer throughput, then solver timings on a 4096 x 4096 layer.

CC      ?= cc
PKGS    := openblas lapacke gsl libcjson inih libpcre2-8 libutf8proc
BUILD   := build

# The packages' flags come from pkg-config, which can only answer once scripts/install-deps.sh has
# installed them. So they live in $(BUILD)/config.mk, made by a rule that runs install-deps.sh
# first: GNU make remakes an included makefile that is missing or out of date before anything
# else, then restarts and reads it, so a fresh machine builds in one `make`. `make clean` alone
# installs nothing.
CONFIG := $(BUILD)/config.mk
.DEFAULT_GOAL := all
ifneq ($(if $(MAKECMDGOALS),$(filter-out clean,$(MAKECMDGOALS)),all),)
include $(CONFIG)
endif

$(CONFIG): Makefile scripts/install-deps.sh
	@scripts/install-deps.sh
	@mkdir -p $(dir $@)
	@c=$$(pkg-config --cflags $(PKGS)) && l=$$(pkg-config --libs $(PKGS)) && \
	  t=$$(pkg-config --libs criterion) && \
	  printf '# Made by the Makefile from pkg-config; deleted by make clean.\nPKG_CFLAGS := %s\nPKG_LIBS := %s\nPKG_TESTLIBS := %s\n' \
	    "$$c" "$$l" "$$t" > $@.tmp && mv $@.tmp $@

CFLAGS  := -std=c11 -O2 -g -fno-trapping-math -Wall -Wextra -Werror -fopenmp -D_POSIX_C_SOURCE=200809L \
           $(PKG_CFLAGS)
# gsl's pkg-config also links gslcblas; OpenBLAS provides cblas, so link gsl alone.
LDLIBS  := $(filter-out -lgslcblas,$(PKG_LIBS)) -lm
TESTLIBS := $(PKG_TESTLIBS)

# Absolute, so scripts that change folder find it too; the binaries default to the same folder
# (core/fileio.h data_root) when run outside make.
SPARQ_DATA ?= $(abspath $(CURDIR)/../shared/data)
export SPARQ_DATA

LIB_SRC  := $(wildcard core/*.c solvers/*.c eval/*.c experiments/*.c)
TEST_SRC := $(wildcard tests/*.c)
HEADERS  := $(wildcard core/*.h solvers/*.h eval/*.h experiments/*.h tests/*.h)

ASAN_BUILD := build-asan
# The sanitizer build has no per-ISA clones (core/vmath.h), so it is compiled for x86-64-v3: there
# vmath_fma is the FMA instruction, not a libm call per multiply-add in every exp and attention
# product (which put the suite's evaluations past their timeouts). The bits are the same.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
              -march=x86-64-v3

.PHONY: all deps test asan run bench clean

all: deps sparq

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(ASAN_BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c $< -o $@

LIB_OBJ      := $(LIB_SRC:%.c=$(BUILD)/%.o)
ASAN_LIB_OBJ := $(LIB_SRC:%.c=$(ASAN_BUILD)/%.o)

sparq: $(BUILD)/sparq.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/sparq-tests: $(TEST_SRC:%.c=$(BUILD)/%.o) $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS) $(TESTLIBS)

$(BUILD)/bench-solvers: $(BUILD)/bench/solvers.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench-tokenizers: $(BUILD)/bench/tokenizers.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(ASAN_BUILD)/sparq: $(ASAN_BUILD)/sparq.o $(ASAN_LIB_OBJ)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $^ -o $@ $(LDLIBS)

$(ASAN_BUILD)/sparq-tests: $(TEST_SRC:%.c=$(ASAN_BUILD)/%.o) $(ASAN_LIB_OBJ)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $^ -o $@ $(LDLIBS) $(TESTLIBS)

# Tests run the CLI through $SPARQ_BIN, so the asan suite exercises the asan binary.
test: deps sparq $(BUILD)/sparq-tests
	SPARQ_BIN=./sparq $(BUILD)/sparq-tests -j2

asan: deps $(ASAN_BUILD)/sparq $(ASAN_BUILD)/sparq-tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	SPARQ_BIN=$(ASAN_BUILD)/sparq $(ASAN_BUILD)/sparq-tests -j2

MODEL := $(SPARQ_DATA)/stories260K/stories260K.bin
TOK   := $(SPARQ_DATA)/stories260K/tok512.bin

# The main job: a greedy story from the dense model, then the default sweep (resumable: a rerun
# only reports), its tables and plots. CI runs it with SWEEP=configs/ci.ini.
SWEEP ?= configs/quick.ini
run: all
	./sparq generate --model $(MODEL) --tokenizer $(TOK)
	./sparq sweep $(SWEEP)
	./sparq report $$(sed -n 's/^out *= *//p' $(SWEEP) | head -1)
	@echo "report: $$(sed -n 's/^out *= *//p' $(SWEEP) | head -1)/report.md, plots in $$(sed -n 's/^out *= *//p' $(SWEEP) | head -1)/plots/"

bench: all $(BUILD)/bench-solvers $(BUILD)/bench-tokenizers $(BUILD)/bench-stories3m $(BUILD)/bench-mamba
	@bench/eval.sh
	@bench/stories3m.sh
	@$(BUILD)/bench-mamba
	@$(BUILD)/bench-tokenizers
	@$(BUILD)/bench-solvers
	@bench/sweep.sh

# bench-scale (issue 17): a random LLaMA-shaped f16 checkpoint (SHAPE=7b, the default: 13.5 GB;
# 1b: 2.2 GB; tiny), written once into $SCALE_DIR (else $TMPDIR, else /tmp)/sparq-scale-SHAPE and
# reused; then compress on its first blocks, a short eval, the solvers on 7B's layer shapes and
# the projection of the whole model at 128 x 2048 calibration tokens (see README, Scale benchmark).
SHAPE ?= 7b
.PHONY: bench-scale
$(BUILD)/bench-scale: $(BUILD)/bench/scale.o $(BUILD)/bench/peak.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bench-scale: all $(BUILD)/bench-scale
	@$(BUILD)/bench-scale --shape $(SHAPE)

$(BUILD)/bench-stories3m: $(BUILD)/bench/stories3m.o $(BUILD)/bench/peak.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench-mamba: $(BUILD)/bench/mamba.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) sparq

# bench-formats: load time and peak RSS of a generated 1.1B-parameter-shaped f16 safetensors
# checkpoint (~2.2 GB, written to /tmp and deleted afterwards).
.PHONY: bench-formats
$(BUILD)/bench-formats: $(BUILD)/bench/formats.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bench-formats: deps $(BUILD)/bench-formats
	@$(BUILD)/bench-formats

# ---- fuzzing: libFuzzer harnesses for every reader (tests/fuzz/README.md) ------------------------
# `make fuzz FUZZ_SECONDS=N` builds each harness with clang + ASan/UBSan into build-fuzz/, builds
# the seed corpora from $SPARQ_DATA, replays tests/fuzz/regressions/, then fuzzes each harness for
# N seconds; any crash, leak, sanitizer report or timeout fails. Needs `scripts/install-deps.sh fuzz`.
.PHONY: fuzz fuzz-deps fuzz-build
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZERS      := llama2c tokenizer safetensors gguf spm_model spm_json sweep tasks results bpe_json bpe_pair bpe_encode
# Like $(CONFIG), and only for fuzz goals: `install-deps.sh fuzz` installs clang, then FUZZ_OMP says
# whether clang can link libomp (-fopenmp), else the pragmas go.
FUZZ_CONFIG  := $(BUILD)/config-fuzz.mk
ifneq ($(filter fuzz fuzz-build $(FUZZ_BUILD)/%,$(MAKECMDGOALS)),)
include $(FUZZ_CONFIG)
endif
$(FUZZ_CONFIG): Makefile scripts/install-deps.sh
	@scripts/install-deps.sh fuzz
	@mkdir -p $(dir $@)
	@o=$$(echo 'int main(void){return 0;}' | $(FUZZ_CC) -fopenmp -x c - -o /dev/null 2>/dev/null \
	      && echo -fopenmp || echo -Wno-unknown-pragmas) && \
	  printf '# Made by the Makefile for fuzz goals; deleted by make clean.\nFUZZ_OMP := %s\n' "$$o" > $@.tmp && mv $@.tmp $@
# -Wno-pass-failed: clang reports `omp simd` loops it did not vectorize (gcc says nothing).
FUZZ_CFLAGS  := -std=c11 -O1 -g -fno-omit-frame-pointer -fno-trapping-math -Wall -Wextra -Werror \
                -Wno-pass-failed $(FUZZ_OMP) -D_POSIX_C_SOURCE=200809L $(PKG_CFLAGS)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BINS    := $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
# Prerequisites of a pattern rule only: keep them, or make deletes them after each link.
.SECONDARY: $(FUZZ_LIB_OBJ) $(BUILD)/tests/fuzz/mkseeds.o

fuzz-deps:
	@scripts/install-deps.sh fuzz

$(FUZZ_BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/use_tokenizer.h $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $< $(FUZZ_LIB_OBJ) -o $@ $(LDLIBS)

# The seed generator is ordinary code: gcc and the normal objects.
$(BUILD)/fuzz-mkseeds: $(BUILD)/tests/fuzz/mkseeds.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

fuzz-build: fuzz-deps $(FUZZ_BINS) $(BUILD)/fuzz-mkseeds sparq

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)
