/* popek — `popek run`: an ordinary Linux program live-patched under the
 * monitor.
 *
 * The program runs in a traced process whose system calls go to the host
 * kernel. A seccomp filter stops it only on the calls that change what is
 * executable (mmap with PROT_EXEC, mprotect, munmap, mremap), on
 * modify_ldt, and on those that change its signal state (which the
 * monitor's own traps must leave as it is). Code is scanned and patched
 * before it first runs: the program, its interpreter, its libraries and
 * the vDSO at exec, and then whatever the program maps executable. A
 * patched site is emulated against a virtual CPU whose values come from a
 * profile; the rest of what the patched rows do (LAR on a real selector, a
 * far transfer, CPUID where the profile does not set it) is run natively
 * out of line. Threads, forks and execs are followed. */
#ifndef POPEK_RUN_H
#define POPEK_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "popek/catalog.h"
#include "popek/status.h"

/* A CPUID leaf the profile sets: what CPUID returns for it. */
typedef struct pk_run_cpuid {
    uint32_t leaf, subleaf;
    bool any_subleaf;               /* the leaf whatever ECX holds (unless a
                                       subleaf of its own is set) */
    uint32_t eax, ebx, ecx, edx;
} pk_run_cpuid;

#define PK_RUN_CPUID_MAX 64

/* What the virtual CPU shows an ordinary program. The default is what
 * Linux itself shows a process on a CPU with UMIP (REFERENCE.md §3), so
 * a program sees no change unless a profile says otherwise. */
typedef struct pk_run_profile {
    uint64_t gdt_base, idt_base;    /* SGDT and SIDT (a 32-bit process sees the low half) */
    uint16_t gdt_limit, idt_limit;
    uint64_t cr0;                   /* SMSW */
    uint16_t tr;                    /* STR */
    uint16_t ldtr;                  /* SLDT once the process has an LDT */
    bool ldtr_always;               /* SLDT shows ldtr even before (a profile's choice) */
    /* With --set extended: CPUID leaves (others read the processor), */
    pk_run_cpuid cpuid[PK_RUN_CPUID_MAX];
    unsigned ncpuid;
    bool tsc_set;                   /* RDTSC and RDTSCP count from tsc at the start */
    uint64_t tsc;                   /* (at the host's rate), */
    bool tsc_aux_set;               /* and RDTSCP's ECX is tsc_aux */
    uint32_t tsc_aux;
} pk_run_profile;

/* Linux's values: GDT 0xfffffffffffe0000, IDT 0xffffffffffff0000, limits
 * 0, CR0 0x80050033, TR 0x40, LDTR 0x50 after modify_ldt; CPUID and the
 * TSC as the processor has them. */
void pk_run_profile_default(pk_run_profile *p);

/* Reads a profile: lines "KEY = VALUE" (gdt_base, gdt_limit, idt_base,
 * idt_limit, cr0, tr, ldtr, tsc, tsc_aux; numbers in C notation: 0x for
 * hexadecimal, a leading 0 for octal), and
 * "cpuid.LEAF = EAX EBX ECX EDX" or "cpuid.LEAF.SUBLEAF = ..." (LEAF and
 * SUBLEAF numbers too); '#' comments, blank lines. Keys it does not name
 * keep their values; ldtr makes SLDT show it always; a CPUID leaf named
 * again takes the later values. Errors: PK_ERR_IO, PK_ERR_FORMAT naming
 * the line. */
pk_status pk_run_profile_load(pk_run_profile *p, const char *path, pk_error *err);

typedef struct pk_run_options {
    unsigned sets;          /* PK_SET_* bits to patch; 0: PK_SET_PG */
    const bool *only;       /* NULL, or PK_CLASS_COUNT flags: these rows, not sets */
    bool no_patch;          /* patch nothing: run the program traced only */
    bool int3_only;         /* no jumps: every site takes INT3 */
    /* Trampolines emulate PUSHF, POPF, SMSW, SGDT, SIDT, SLDT and STR in
     * place, against a page of the profile's values mapped beside them
     * (fastpath.h); the monitor sees only what they cannot decide. */
    bool fast_path;
    const pk_run_profile *profile; /* NULL: pk_run_profile_default */
    FILE *log;              /* the monitor's messages and --trace (stderr) */
    const char *cache_dir;  /* where scans of files are kept between runs, or NULL */
    bool trace;             /* one line per emulated site */
} pk_run_options;

typedef struct pk_run_stats {
    uint64_t emulated[PK_CLASS_COUNT];  /* sites emulated against the vcpu */
    uint64_t native[PK_CLASS_COUNT];    /* sites run natively out of line */
    uint64_t stops;                     /* ptrace stops */
    uint64_t syscalls;                  /* system calls the filter stopped */
    uint64_t injected;                  /* system calls the monitor made in the program */
    uint64_t signals;                   /* the program's own signals passed on */
    uint64_t sites_patched;             /* sites patched (INT3 or jump) */
    uint64_t sites_jumped;              /* of those, by a jump to a trampoline */
    uint64_t mappings_scanned;          /* executable mappings scanned */
    uint64_t scan_cache_hits;           /* of those, a file scanned before (this run or
                                           one before it, from the cache directory) */
    uint64_t write_faults;              /* writes to a page of patched code */
    uint64_t exec_faults;               /* runs of a written page, scanned first */
    uint64_t threads, processes;        /* traced in all */
    uint64_t total_ns;
} pk_run_stats;

typedef struct pk_run_result {
    int status;             /* the exit status `popek run` gives */
    bool monitor_ended;     /* the monitor, not the program, ended the run */
    char report[512];       /* with monitor_ended: one line, why */
    pk_run_stats stats;
} pk_run_result;

/* Runs argv[0] (searched in PATH) with argv under the monitor, to the end
 * of every process it traces. result->status is the program's own exit
 * status (128 + N when signal N killed it), or 121 when a patched site
 * could not be emulated, 125 when the monitor failed. Returns an error
 * only when the program cannot be started: then err says why. */
pk_status pk_run(char *const argv[], const pk_run_options *opts, pk_run_result *result,
                 pk_error *err);

/* Prints result->stats for people (`--stats`). */
void pk_run_print_stats(FILE *out, const pk_run_result *result);

#endif
