/* popek — `popek boot`: a guest kernel run deprivileged at ring 3.
 *
 * The guest runs in a ptrace'd, seccomp-sandboxed Linux process. Privileged
 * instructions fault there and are emulated (trap-and-emulate); the
 * non-virtualizable ones were patched with INT3 before they could run and
 * are emulated too (scan-and-patch). Both go through pk_emulate against the
 * guest's virtual CPU; port I/O reaches the virtual devices, and the PIT's
 * interrupts enter the guest through its own IDT while its virtual IF is 1. */
#ifndef POPEK_BOOT_H
#define POPEK_BOOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "popek/catalog.h"
#include "popek/status.h"

typedef struct pk_boot_options {
    uint64_t mem_size;      /* bytes of guest RAM; 0: 64 MiB */
    unsigned sets;          /* PK_SET_* bits to patch; 0: PK_SET_PG */
    const bool *only;       /* NULL, or PK_CLASS_COUNT flags: these rows, not sets */
    bool no_patch;          /* trap-only: patch nothing */
    double timeout;         /* seconds of wall time; 0: none */
    const char *cmdline;    /* the Multiboot command line; NULL: "" */
    FILE *uart;             /* where the guest's serial output goes */
    FILE *trace;            /* one line per emulated event, or NULL */
} pk_boot_options;

/* How the guest ended, and the exit status `popek boot` gives for it. */
typedef enum pk_guest_end {
    PK_GUEST_EXIT,          /* it wrote its status to port 0xF4 */
    PK_GUEST_TRIPLE_FAULT,  /* 120: stopped for good: a triple fault, or a HLT
                               nothing can wake */
    PK_GUEST_UNSUPPORTED,   /* 121: an instruction the monitor cannot emulate */
    PK_GUEST_TIMEOUT,       /* 122: --timeout passed */
    PK_GUEST_MONITOR_ERROR, /* 125: the monitor itself failed */
} pk_guest_end;

enum {
    PK_STATUS_TRIPLE_FAULT = 120,
    PK_STATUS_UNSUPPORTED = 121,
    PK_STATUS_TIMEOUT = 122,
    PK_STATUS_MONITOR_ERROR = 125,
};

typedef struct pk_boot_stats {
    uint64_t by_patch[PK_CLASS_COUNT];  /* emulated at a patched site */
    uint64_t by_trap[PK_CLASS_COUNT];   /* emulated after the CPU faulted */
    uint64_t stops;                     /* ptrace stops */
    uint64_t interrupts;                /* virtual interrupts delivered */
    uint64_t exceptions;                /* faults delivered to the guest */
    uint64_t host_syscalls;             /* system calls the guest tried */
    uint64_t sites_patched;             /* INT3 patches placed */
    uint64_t pages_scanned;             /* pages scanned when first run */
    uint64_t pages_released;            /* code pages written (made data) */
    uint64_t monitor_ns;                /* time with the guest stopped */
    uint64_t total_ns;                  /* time from the first instruction */
} pk_boot_stats;

typedef struct pk_boot_result {
    pk_guest_end end;
    int status;             /* the exit status for this ending */
    char report[512];       /* one line: how it ended */
    pk_boot_stats stats;
} pk_boot_result;

/* Boots the guest kernel at path and runs it to its end. Returns an error
 * only when the guest cannot be started (bad file, bad options): then err
 * says why. Every ending after its first instruction is in result. */
pk_status pk_boot(const char *path, const pk_boot_options *opts, pk_boot_result *result,
                  pk_error *err);

/* Prints result.stats for people (`--stats`): counts of stops, interrupts,
 * pages, the monitor's share of the time, and per catalog row how many
 * were emulated at a patched site and how many after a fault. */
void pk_boot_print_stats(FILE *out, const pk_boot_result *result);

/* Writes the ending and the stats as one JSON object (`--report FILE`),
 * for scripts that must tell the monitor's endings from the guest's own
 * exit status. */
void pk_boot_write_report(FILE *out, const char *path, const pk_boot_result *result);

#endif
