# popek — build, tests, demo.
#
#   make               build build/popek and build/libpopek.a
#   make demo          install missing Debian packages, build, run the demo
#   make test          install missing Debian packages, build, run every test
#   make test SANITIZE=1   the same, built with ASan and UBSan (in build-san/)
#   make check-kernel  scan the newest Debian cloud kernel package
#   make bench         run the benchmarks in bench/
#   make docs          regenerate docs/catalog.md from the catalog
#   make fuzz          fuzz the loader and scanner (FUZZ_SECONDS, default 60)
#   make guests        build the guest kernels in samples/
#   make run-samples   build the programs for `popek run` in samples/run/

CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Iinclude -pthread -D_GNU_SOURCE
LDLIBS  := -lZydis -lelf -lz -llzma -lzstd -llz4 -pthread

ifeq ($(SANITIZE),1)
BUILD   := build-san
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD   := build
endif

LIB_SRC   := $(wildcard scanner/*.c patcher/*.c monitor/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(wildcard cli/*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC  := $(wildcard tests/unit/*.c)
UNIT_OBJ  := $(UNIT_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB   := $(BUILD)/libpopek.a
POPEK := $(BUILD)/popek
UNIT  := $(BUILD)/unit-tests

# Guest kernels: freestanding, Multiboot, linked at 1 MiB. Always gcc
# (they boot under QEMU and `popek boot`, and never link with popek). The
# 64-bit one: no red zone (interrupts push on the kernel's stack), no SSE
# (the monitor does not keep vector state apart), the small code model at
# low addresses, and 4 KiB file pages so that QEMU's Multiboot loader and
# the ELF program headers agree (samples/guest64/link.ld).
GUEST_CC     ?= gcc
GUEST_CFLAGS := -m32 -ffreestanding -fno-pic -no-pie -nostdlib -static \
                -fno-stack-protector -O2 -Wall -Wextra -Werror -Wl,--build-id=none
GUEST64_CFLAGS := -m64 -ffreestanding -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only \
                -nostdlib -static -fno-stack-protector -O2 -Wall -Wextra -Werror \
                -Wl,--build-id=none -Wl,-z,max-page-size=0x1000
GUEST32      := $(BUILD)/samples/guest32.elf
GUEST64      := $(BUILD)/samples/guest64.elf
HOSTILE32    := $(BUILD)/samples/hostile32.elf
PROBE32      := $(BUILD)/samples/probe32.elf
GUESTS32     := $(GUEST32) $(HOSTILE32) $(PROBE32)
GUESTS       := $(GUESTS32) $(GUEST64)

# Programs for `popek run` (samples/run/): ordinary dynamically linked
# executables, one per behaviour, built as any program would be (no
# sanitizers even with SANITIZE=1: their output is compared with a native
# run). redpill.c is built twice, 64- and 32-bit.
RUN_CC      ?= gcc
RUN_CFLAGS  := -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE
RUN_NAMES   := jit hotpage threads signals ldt redpill cpuid
RUN_SAMPLES := $(RUN_NAMES:%=$(BUILD)/samples/run/%) $(BUILD)/samples/run/redpill32

.PHONY: all deps demo test unit e2e check-kernel bench docs fuzz clean guests run-samples

all: $(POPEK) $(LIB) $(GUESTS) $(RUN_SAMPLES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# What guest32 and guest64 share (samples/common/): compiled into each, with
# the guest's own directory on the include path for its layout.h.
GUEST_COMMON_SRC := samples/common/checks.c samples/common/console.c \
                    samples/common/faults.c samples/common/helpers.S \
                    samples/common/timer.c
GUEST_COMMON_H   := samples/common/checks.h samples/common/console.h \
                    samples/common/entry.h samples/common/faults.h \
                    samples/common/layout_common.h samples/common/multiboot.h \
                    samples/common/timer.h samples/common/x86.h

$(GUEST32): samples/guest32/entry.S samples/guest32/guest32.c samples/guest32/arch.h \
             samples/guest32/layout.h $(GUEST_COMMON_SRC) $(GUEST_COMMON_H)
$(GUEST32): GUEST_INC := -Isamples/guest32
$(HOSTILE32): samples/hostile32/hostile32.c samples/guest32/arch.h samples/common/x86.h \
              samples/common/multiboot.h
$(PROBE32): samples/probe32/probe32.c samples/common/x86.h samples/common/multiboot.h
$(GUESTS32): samples/guest32/link.ld
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_INC) -T samples/guest32/link.ld $(filter %.c %.S,$^) -o $@

$(GUEST64): samples/guest64/entry.S samples/guest64/guest64.c samples/guest64/arch64.h \
            samples/guest64/layout.h $(GUEST_COMMON_SRC) $(GUEST_COMMON_H) \
            samples/guest64/link.ld
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST64_CFLAGS) -Isamples/guest64 -T samples/guest64/link.ld $(filter %.c %.S,$^) -o $@

guests: $(GUESTS)

$(BUILD)/samples/run/threads: RUN_CFLAGS += -pthread
$(BUILD)/samples/run/%: samples/run/%.c samples/run/sample.h
	@mkdir -p $(dir $@)
	$(RUN_CC) $(RUN_CFLAGS) $< -o $@

$(BUILD)/samples/run/redpill32: samples/run/redpill.c samples/run/sample.h
	@mkdir -p $(dir $@)
	$(RUN_CC) -m32 $(RUN_CFLAGS) $< -o $@

run-samples: $(RUN_SAMPLES)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(POPEK): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(UNIT): $(UNIT_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(UNIT_OBJ) $(LIB) $(LDLIBS) -lcriterion -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

deps:
	@scripts/install-deps

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo $(POPEK)

test: deps
	@$(MAKE) --no-print-directory unit e2e

unit: $(UNIT) $(POPEK)
	LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0 $(UNIT) --jobs 2

e2e: $(POPEK) $(BENCH_BIN) $(GUESTS) $(RUN_SAMPLES)
	POPEK=$(abspath $(POPEK)) BUILD=$(abspath $(BUILD)) tests/e2e/run

check-kernel: deps
	@$(MAKE) --no-print-directory all
	POPEK=$(abspath $(POPEK)) scripts/check-kernel

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	BUILD=$(abspath $(BUILD)) bench/run

FUZZ_SECONDS ?= 60
FUZZ_DIR := build-fuzz
fuzz:
	@scripts/install-deps fuzz
	@mkdir -p $(FUZZ_DIR)/corpus
	clang -g -O1 -std=gnu11 -Iinclude -D_GNU_SOURCE -pthread \
	    -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_image.c $(LIB_SRC) \
	    $(LDLIBS) -o $(FUZZ_DIR)/fuzz_image
	@# Seeds: real ELF files (first byte 0: fed to the ELF loader and patched).
	@for bits in 32 64; do \
	    gcc -m$$bits -nostdlib -static -no-pie samples/scan/sensitive.S \
	        -o $(FUZZ_DIR)/sensitive$$bits && \
	    { printf '\0'; cat $(FUZZ_DIR)/sensitive$$bits; } > $(FUZZ_DIR)/corpus/seed-sensitive$$bits; \
	done
	@{ printf '\0'; cat /usr/bin/true; } > $(FUZZ_DIR)/corpus/seed-true
	$(FUZZ_DIR)/fuzz_image -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(FUZZ_DIR)/corpus

docs: $(POPEK)
	$(POPEK) explain --format markdown > docs/catalog.md

clean:
	rm -rf build build-san build-fuzz build-guest

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
