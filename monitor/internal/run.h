/* popek — what the parts of `popek run` share: traced processes and
 * threads, live code (livecode.c) and the emulation of sites (runemu.c);
 * the engine is run.c. */
#ifndef POPEK_INTERNAL_RUN_H
#define POPEK_INTERNAL_RUN_H

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include <Zydis/Zydis.h>

#include "popek/fastpath.h"
#include "popek/patch.h"
#include "popek/run.h"
#include "popek/status.h"

/* An executable mapping as /proc/PID/maps last showed it. */
typedef struct run_mapping {
    uint64_t start, end, offset;
    uint64_t dev, inode;
    int prot;               /* PROT_* */
    bool shared;            /* MAP_SHARED */
    char *path;             /* NULL for anonymous memory; "[vdso]" */
} run_mapping;

typedef struct run_range {
    uint64_t start, end;
} run_range;

/* A page of code the program writes (anonymous or writable executable
 * memory): the monitor holds back its execute permission while it is data,
 * and its write permission while it is code (see livecode.c). */
typedef struct run_page {
    uint64_t addr;
    int prot;               /* what the program asked for */
    bool data;              /* now data: written, not yet scanned */
    uint8_t *written;       /* NULL, or a bit per byte the program stored to */
} run_page;

/* An out-of-line copy of a site, where the monitor runs it natively. */
typedef struct run_slot {
    uint64_t site;          /* 0: free, its room for another copy */
    uint64_t addr;
    uint8_t len;
} run_slot;

/* Sites remembered after their INT3 went (see run_was_site). */
#define RUN_GHOSTS 256
/* Calls changing code at the same time in one process. */
#define RUN_BUSY_MAX 64

/* What a process does with a signal, as it last set it (the kernel's
 * struct sigaction, widened). */
typedef struct run_sigaction {
    uint64_t handler;       /* 0 SIG_DFL, 1 SIG_IGN, else a function */
    uint64_t flags, restorer;
    uint64_t mask;          /* bit sig - 1 for signal sig */
} run_sigaction;

#define RUN_SIGNALS 64

typedef struct run_sighand run_sighand;

/* Where the trampolines of one file went in a process, and the vcpu page
 * after them (at + size) when they have fast-path blocks. */
typedef struct run_placed {
    uint64_t dev, inode, bias;
    uint64_t at, size;
    uint64_t page;          /* 0 without the fast path */
} run_placed;

typedef struct run_process {
    pid_t pid;              /* the thread-group id */
    int mem;                /* /proc/PID/mem */
    unsigned bits;          /* 64, or 32 for an i386 program */
    pk_patch_table table;   /* the sites patched in it (INT3), sorted */
    size_t table_cap;
    run_range *covered;     /* executable memory scanned, sorted, apart */
    size_t ncovered, covered_cap;
    run_page *pages;        /* sorted by address */
    size_t npages, pages_cap;
    uint64_t stub;          /* the monitor's page in the process, or 0 */
    uint64_t slot_page;     /* the monitor's page of out-of-line copies, */
    size_t slot_used;       /* and how much of it they fill */
    pk_patch_table via;     /* the INT3 of each site in a trampoline: site is
                               its address, trampoline the site's own */
    size_t via_cap, jumps_cap;
    struct run_placed *placed; /* trampolines mapped, one area per file */
    size_t nplaced, placed_cap;
    /* The counterparts of the jump last asked about (its trampoline, or 0),
     * while its jumps stay: checking a trampoline of blocks makes them
     * again, and a signal that waits for a block asks at each step. */
    uint64_t counterparts_of;
    uint64_t counterparts[PK_JUMP_MAX_LEN];
    run_slot *slots;
    size_t nslots, slots_cap;
    bool has_ldt;           /* it called modify_ldt to write */
    run_sighand *sighand;   /* its handlers (shared with CLONE_SIGHAND) */
    uint64_t ghosts[RUN_GHOSTS]; /* INT3 sites lately removed */
    size_t nghosts;
    run_range busy[RUN_BUSY_MAX]; /* ranges a thread's call is changing, */
    pid_t busy_tid[RUN_BUSY_MAX]; /* and its thread */
    size_t nbusy;
    unsigned threads;       /* live threads */
} run_process;

/* What a thread waits for the monitor to finish when it next stops. */
typedef enum run_pending {
    RUN_NOTHING,
    RUN_SYSCALL_EXIT,       /* a system call the filter stopped: see its result */
    RUN_EXEC_EXIT,          /* execve returned: set the new program up */
    RUN_NATIVE_STEP,        /* a site run out of line, one step */
    RUN_WRITE_STEP,         /* a code page's write to itself, opened for it, one step */
    RUN_BLOCK_STEP,         /* a fast-path block, stepped to its end before a signal */
} run_pending;

typedef struct run_thread {
    pid_t tid;
    run_process *proc;
    bool seen;              /* its first stop came */
    uint64_t vflags;        /* what its PUSHF shows of IF and IOPL (NT and ID are
                               its real flags') */
    run_pending pending;
    long sc_nr;             /* RUN_SYSCALL_EXIT: the call, normalized, */
    uint64_t sc_args[6];    /* its arguments (old_mmap's read from memory) */
    long sc_ret;            /* and its result */
    int sc_prot;            /* mremap: the moved pages' protection, or -1 */
    bool sc_exec_held;      /* mprotect: PROT_EXEC held back (run_code_enter) */
    bool sc_compat;         /* the call is of the i386 ABI */
    uint64_t step_site;     /* RUN_NATIVE_STEP: where the site's INT3 is, its copy, */
    uint64_t step_slot;
    uint64_t step_resume;   /* where the thread goes on after it, */
    uint8_t step_len;       /* its length and the copy's */
    bool step_tf;           /* the program had TF set: its trap follows */
    uint64_t step_from;     /* RUN_WRITE_STEP: where the instruction is */
    bool step_call_far;     /* a far CALL: its return address to mend */
    uint8_t step_width;     /* its operand size in bytes */
    uint64_t step_page;     /* RUN_WRITE_STEP: the page opened */
    int deferred;           /* a signal that came while the monitor worked, or 0 */
    siginfo_t requeue;      /* a signal of the program's to send again, or si_signo 0 */
    siginfo_t held;         /* RUN_BLOCK_STEP: the signal to deliver after the block, */
    bool held_tf;           /* whether the program had TF set, */
    uint64_t held_mask;     /* and its signal mask, while others wait */
    uint64_t sigmask;       /* the signals it blocks, as the program set them, */
    bool sigmask_known;     /* once its first stop showed them */
} run_thread;

/* i386 system call numbers (asm/unistd_32.h), for programs of that ABI. */
enum {
    I386_SIGNAL = 48, I386_SIGACTION = 67, I386_SSETMASK = 69, I386_OLD_MMAP = 90,
    I386_MUNMAP = 91, I386_SIGRETURN = 119, I386_CLONE = 120, I386_MODIFY_LDT = 123,
    I386_MPROTECT = 125, I386_SIGPROCMASK = 126, I386_MREMAP = 163,
    I386_RT_SIGRETURN = 173, I386_RT_SIGACTION = 174, I386_RT_SIGPROCMASK = 175,
    I386_MMAP2 = 192, I386_RT_TGSIGQUEUEINFO = 335, I386_PKEY_MPROTECT = 380,
};

/* The system calls the filter stops on, the same for both ABIs. */
enum {
    RUN_SC_OTHER,
    RUN_SC_MMAP,
    RUN_SC_MPROTECT,
    RUN_SC_MUNMAP,
    RUN_SC_MREMAP,
    RUN_SC_MODIFY_LDT,
    RUN_SC_SIGACTION,       /* rt_sigaction */
    RUN_SC_OLD_SIGACTION,   /* the i386 sigaction of old */
    RUN_SC_SIGNAL,          /* the i386 signal */
    RUN_SC_SIGPROCMASK,     /* rt_sigprocmask */
    RUN_SC_OLD_SIGPROCMASK, /* the i386 sigprocmask and ssetmask of old */
    RUN_SC_SIGRETURN,       /* rt_sigreturn, or the i386 sigreturn */
};

typedef struct run_scan_cache run_scan_cache;

typedef struct run_engine {
    const pk_run_options *opts;
    pk_run_profile profile;
    pk_run_stats *stats;
    FILE *log;
    unsigned sets;
    run_thread **threads;
    size_t nthreads, threads_cap;
    run_process **procs;
    size_t nprocs, procs_cap;
    run_scan_cache *cache;
    ZydisDecoder decoder64, decoder32;
    bool exec_seen;         /* the program has started */
    uint64_t tsc_start;     /* the TSC when it started (the profile's tsc) */
    /* The monitor ended the run: status and why. */
    bool ended;
    int end_status;
    char end_report[512];
} run_engine;

/* ---- run.c: driving threads ---------------------------------------------------- */

/* What /proc/TID/status says of a thread. */
typedef struct run_status {
    pid_t tgid;             /* its thread group */
    bool dying;             /* a zombie, or a SIGKILL pending for it or its process */
    uint64_t blocked, ignored, caught; /* SigBlk, SigIgn, SigCgt */
} run_status;

/* False when tid is gone. */
bool run_read_status(pid_t tid, run_status *s);

/* Stopped thread t's registers. */
pk_status run_get_regs(run_thread *t, struct user_regs_struct *r, pk_error *err);
pk_status run_set_regs(run_thread *t, const struct user_regs_struct *r, pk_error *err);

/* Makes system call nr (the process's ABI) in stopped thread t, which
 * then stands where it stood. *ret gets the result (-errno on failure). */
pk_status run_inject(run_engine *e, run_thread *t, long nr, const uint64_t args[6], long *ret,
                     pk_error *err);

/* Maps size bytes, readable and executable, for the monitor's own use in
 * t's process: at at exactly (*addr 0 when that is taken), or anywhere
 * when at is 0. The range counts as covered: never scanned. */
pk_status run_map(run_engine *e, run_thread *t, uint64_t at, uint64_t size, uint64_t *addr,
                  pk_error *err);

/* The process's mprotect, injected. */
pk_status run_protect(run_engine *e, run_thread *t, uint64_t addr, uint64_t len, int prot,
                      pk_error *err);

/* Ends the run: the monitor cannot go on (status 121 or 125). */
void run_end(run_engine *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void run_log(run_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- livecode.c: what is executable, scanned and patched ----------------------- */

/* Room for one more of n elements of size bytes in *array (capacity *cap,
 * doubled as needed); false when memory runs out. run_append adds item. */
bool run_grow(void **array, size_t *cap, size_t n, size_t size);
bool run_append(void **array, size_t *count, size_t *cap, const void *item, size_t size);

/* Reads and writes process memory, whatever its protection. */
bool run_peek(run_process *p, uint64_t addr, void *buf, size_t len);
bool run_poke(run_process *p, uint64_t addr, const void *buf, size_t len);

/* The patched site at addr, or NULL. */
const pk_patch *run_site_at(const run_process *p, uint64_t addr);

/* The site whose INT3 in a trampoline is at addr, or NULL (its site field
 * is that address, its trampoline field the site's own address). */
const pk_patch *run_via_at(const run_process *p, uint64_t addr);

/* The instruction whose counterpart in a trampoline is at addr (where
 * the program sees it run: a signal's handler is shown that address), or
 * 0 when addr is no such counterpart. */
uint64_t run_original_of(run_engine *e, run_process *p, uint64_t addr);

/* A fault at r->rip inside a fast-path block: puts back what the block
 * changed and sets rip to the site's INT3, where the monitor emulates it
 * (see pk_fastpath_undo). False, changing nothing, when rip is in no block
 * or at an instruction that cannot fault. */
bool run_undo_block(run_process *p, struct user_regs_struct *r);

/* Whether addr is inside a fast-path block of p: past its first
 * instruction, short of its INT3 or its end. */
bool run_in_block(run_process *p, uint64_t addr);

/* Writes the vcpu page after each of t's process's fast-path trampolines
 * (run_fast_page): when they are placed and when what it holds changes. */
pk_status run_fast_pages(run_engine *e, run_thread *t, pk_error *err);

/* The vcpu page of p's fast-path blocks: the profile's values, and what
 * p's threads share (runemu.c). */
void run_fast_page(const run_engine *e, const run_process *p, pk_vcpu_page *page);

/* Where code resuming at addr goes on: when addr is inside a jump's
 * bytes (a handler returning to an instruction run in a trampoline),
 * its counterpart in the trampoline; else addr. */
uint64_t run_resume_at(run_process *p, uint64_t addr);

/* Marks [lo, hi) as the monitor's own memory in p: never scanned. */
bool run_own(run_process *p, uint64_t lo, uint64_t hi);

/* Brings p's patches up to date with its executable mappings: scans and
 * patches new code, forgets code that is gone or no longer executable
 * (putting its original bytes back), and write-protects patched pages
 * the program may write. t is a stopped thread of p. */
pk_status run_code_sync(run_engine *e, run_thread *t, pk_error *err);

/* A filtered call is about to run in t: keeps other threads off the range
 * it changes until run_code_sync (or run_code_settle) at its return. */
pk_status run_code_enter(run_engine *e, run_thread *t, pk_error *err);

/* t's call failed: what an mprotect changed before failing is taken in
 * hand (run_code_sync), or nothing is (run_code_settle). */
pk_status run_code_failed(run_engine *e, run_thread *t, pk_error *err);

/* Thread tid's call is over (it failed, or the thread is gone). */
void run_code_settle(run_process *p, pid_t tid);

/* Whether an INT3 the monitor placed stood at addr until lately: a trap
 * from it may still come after the site went. */
bool run_was_site(const run_process *p, uint64_t addr);

/* True when [addr, addr + len) touches an executable mapping p knew. */
bool run_code_touches(const run_process *p, uint64_t addr, uint64_t len);

/* A fault at addr that the monitor's protection of a code page caused
 * (SIGSEGV, SEGV_ACCERR) with the thread at rip: handles it and returns
 * true; false when it is the program's own. May leave t in RUN_WRITE_STEP. */
bool run_code_fault(run_engine *e, run_thread *t, uint64_t addr, uint64_t rip,
                    pk_error *err, pk_status *status);

/* After the step of RUN_WRITE_STEP (rip where the thread goes on): scans
 * the page again, patches it and protects it. */
pk_status run_code_write_done(run_engine *e, run_thread *t, uint64_t rip, pk_error *err);

/* A new empty process record, and the end of one. */
run_process *run_process_new(pid_t pid);
void run_process_free(run_process *p);

/* A copy of p for a forked child (same code, same patches; the same
 * handlers, shared with p when share_handlers: CLONE_SIGHAND). */
run_process *run_process_fork(const run_process *p, pid_t child, bool share_handlers);

/* Forgets everything of p's old program at exec. */
void run_process_reset(run_process *p);

void run_cache_free(run_scan_cache *c);

/* ---- runsig.c: the program's signal state --------------------------------------- */

/* A table of handlers: all default (from NULL) or a copy of from; shared
 * with one more process; dropped by one. */
run_sighand *run_sighand_new(const run_sighand *from);
run_sighand *run_sighand_share(run_sighand *h);
void run_sighand_drop(run_sighand *h);

/* t's mask as it is now (t stopped). */
void run_sig_read_mask(run_thread *t);

/* After exec: handlers of its own, default, but for the signals ignored.
 * PK_ERR_NOMEM. */
pk_status run_sig_exec(run_process *p);

/* A call of RUN_SC_SIGACTION .. RUN_SC_SIGRETURN is about to run in t:
 * true when the monitor must see it return (run_sig_syscall_exit). */
bool run_sig_syscall_entry(run_thread *t);
void run_sig_syscall_exit(run_thread *t);

/* t is about to take the program's own signal sig (its handler runs with
 * the handler's mask). */
void run_sig_delivered(run_thread *t, int sig);

/* Whether a handler of p's runs when sig is delivered, as the monitor
 * follows them; and as /proc shows them now. */
bool run_sig_handled(const run_process *p, int sig);
bool run_sig_caught_now(pid_t tid, int sig);

/* Whether t blocks sig. */
bool run_sig_blocked(const run_thread *t, int sig);

/* Whether the kernel's delivery of sig by force (a trap or fault) leaves
 * t's signal state as it is: sig neither blocked nor ignored. */
bool run_sig_quiet(const run_thread *t, int sig);

/* Whether a forced sig has changed t's signal state since the monitor
 * last put it as the program set it (sig was blocked or ignored). */
bool run_sig_forced(const run_thread *t, int sig);

/* t stopped with a forced sig the monitor consumes: puts back what its
 * delivery changed (handler reset, sig unblocked). */
pk_status run_sig_mend(run_engine *e, run_thread *t, int sig, pk_error *err);

/* Sends si to t again, from t itself (it stays pending while blocked). */
pk_status run_sig_requeue(run_engine *e, run_thread *t, const siginfo_t *si, pk_error *err);

/* ---- runemu.c: sites -------------------------------------------------------------- */

/* Thread t stopped at the INT3 at, standing for site (at site->site, or
 * in a trampoline): emulates the site against the profile, or starts
 * running it natively out of line (t->pending = RUN_NATIVE_STEP). Either
 * way the thread goes on at resume. */
pk_status run_emulate_site(run_engine *e, run_thread *t, const pk_patch *site, uint64_t at,
                           uint64_t resume, struct user_regs_struct *regs, pk_error *err);

/* An instruction of the program's as it stands: its address, bytes and
 * length (as a pk_patch's), decoded with operands. */
typedef struct run_insn {
    pk_patch at;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
} run_insn;

/* The instruction at rip in p; false when it does not decode. */
bool run_decode(run_engine *e, run_process *p, uint64_t rip, run_insn *ri);

/* Whether it can run from a copy out of line: not a branch. */
bool run_copyable(const run_insn *ri);

/* Runs it in stopped thread t from a copy, for one step (RUN_NATIVE_STEP,
 * as a site run natively; not counted as one); not *started when no copy
 * can reach its operand. */
pk_status run_copy_step(run_engine *e, run_thread *t, const run_insn *ri, bool *started,
                        pk_error *err);

/* After the step of RUN_NATIVE_STEP: puts rip back in the program's code. */
pk_status run_native_done(run_engine *e, run_thread *t, struct user_regs_struct *regs,
                          pk_error *err);

#endif
