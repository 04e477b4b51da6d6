/* popek — the guest process: created, sandboxed and driven with ptrace.
 *
 * Guest RAM is a memfd mapped twice: in the guest at its guest-physical
 * addresses (guest virtual = guest physical = host virtual), and in the
 * monitor anywhere, so the monitor reads and writes guest memory with plain
 * loads and stores. The guest process is a fork of the monitor that maps
 * its RAM, installs a seccomp filter sending every system call to the
 * monitor, and traps; from then on it runs only guest code. */
#ifndef POPEK_INTERNAL_TRACEE_H
#define POPEK_INTERNAL_TRACEE_H

#include <stdbool.h>
#include <stdint.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>
#include <sys/user.h>

#include "popek/status.h"
#include "popek/vcpu.h"

typedef struct pk_tracee {
    pid_t pid;
    int ram_fd;
    uint8_t *ram;           /* the monitor's view: ram[a] is guest address a */
    uint64_t ram_size;
    uint64_t ram_low;       /* the lowest guest address backed (mmap_min_addr) */
    bool long_mode;         /* runs 64-bit code (CS 0x33), else compat (0x23) */
    timer_t timer;          /* interrupts the guest at a deadline */
    bool has_timer;
    struct sigaction old_alarm; /* SIGALRM as it was before */
    cpu_set_t cpus;         /* the monitor's CPUs before pk_tracee_pin */
    bool pinned;
    uint64_t armed_ns;      /* the deadline the timer is armed for, or 0 */
    struct user_regs_struct raw; /* the registers as last read or written */
    bool raw_valid;         /* raw is what the stopped guest has now */
    uint64_t injected_syscalls;
} pk_tracee;

/* How the guest stopped. */
typedef enum pk_stop_kind {
    PK_STOP_SIGNAL,         /* a fault or trap: signal and siginfo */
    PK_STOP_SYSCALL,        /* the guest entered a host system call (seccomp) */
    PK_STOP_INTERRUPTED,    /* stopped by the monitor for a deadline */
    PK_STOP_EXITED,         /* the process is gone (status) */
} pk_stop_kind;

typedef struct pk_stop {
    pk_stop_kind kind;
    int signal;
    int code;               /* siginfo si_code */
    uint64_t fault_addr;    /* siginfo si_addr */
    int status;             /* PK_STOP_EXITED: the wait status */
    uint64_t rip;           /* PK_STOP_INTERRUPTED: where the guest stands */
    long syscall_nr;        /* PK_STOP_SYSCALL */
    /* PK_STOP_INTERRUPTED: a signal (a fault's) waits to be delivered as
     * soon as the guest resumes; nothing may change the guest before. */
    bool signal_pending;
} pk_stop;

/* True when guest RAM backs all of [addr, addr + len). */
static inline bool pk_tracee_holds(const pk_tracee *t, uint64_t addr, uint64_t len)
{
    return addr >= t->ram_low && addr <= t->ram_size && len <= t->ram_size - addr;
}

/* Creates the stopped guest process with ram_size bytes of RAM, backed
 * from the lowest address Linux lets it map. */
pk_status pk_tracee_spawn(pk_tracee *t, uint64_t ram_size, bool long_mode, pk_error *err);

/* Kills the process (if alive) and releases everything. */
void pk_tracee_destroy(pk_tracee *t);

/* Pins the monitor and the guest to the CPU the monitor runs on, until
 * pk_tracee_destroy. They take turns, never run together: on one CPU a
 * ptrace stop costs a few microseconds, across two several times that
 * (each wakeup crosses CPUs). */
void pk_tracee_pin(pk_tracee *t);

/* pk_regs from the kernel's register layout, and back (the general
 * registers, rip, the flags and the FS/GS bases). */
void pk_regs_from_user(const struct user_regs_struct *raw, pk_regs *regs);
void pk_regs_to_user(const pk_regs *regs, struct user_regs_struct *raw);

/* The general registers and flags, and back. Segment registers stay the
 * host's flat ones; set_regs also puts the process in 32- or 64-bit mode. */
pk_status pk_tracee_get_regs(pk_tracee *t, pk_regs *regs, pk_error *err);
pk_status pk_tracee_set_regs(pk_tracee *t, const pk_regs *regs, pk_error *err);

/* Runs the guest until its next stop, or until deadline_ns (CLOCK_MONOTONIC;
 * 0: none) passes, when it is interrupted. single_step runs one instruction. */
pk_status pk_tracee_run(pk_tracee *t, bool single_step, uint64_t deadline_ns,
                        pk_stop *stop, pk_error *err);

/* Makes the system call stopped at (stop->kind == PK_STOP_SYSCALL) not
 * happen; the guest continues after the instruction with rAX = -ENOSYS. */
pk_status pk_tracee_skip_syscall(pk_tracee *t, pk_error *err);

/* Changes the protection of guest pages [addr, addr + len) in the guest
 * process (PROT_* bits), by making the system call there. */
pk_status pk_tracee_protect(pk_tracee *t, uint64_t addr, uint64_t len, int prot,
                            pk_error *err);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t pk_now_ns(void);

#endif
