/* popek — `popek run`: the engine that follows an ordinary program's
 * threads and processes under ptrace.
 *
 * The program is started stopped, seized, and given a seccomp filter that
 * sends the monitor only the system calls that change what is executable
 * (and modify_ldt), and those that change the program's signal state
 * (runsig.c); every other call goes straight to the host kernel. The
 * monitor then waits on every thread it traces (clones, forks and vforks
 * are followed automatically) and acts on four kinds of stops:
 *
 * - exec: a new program; once execve has returned, its code is scanned and
 *   patched (livecode.c) before its first instruction runs;
 * - a filtered system call: let it run, and on its way out bring the
 *   patches up to date with the new mappings;
 * - SIGTRAP at a patched INT3 (at a site or in a trampoline): emulate the
 *   site (runemu.c);
 * - SIGSEGV on written code the monitor holds: the write or the run it
 *   holds back (livecode.c).
 *
 * The monitor makes system calls in the program itself (mmap, mprotect)
 * through a `syscall; int3` stub it maps there.
 *
 * Every other signal is the program's own and is passed on unchanged. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "popek/boot.h"
#include "popek/run.h"
#include "popek/vcpu.h"
#include "../scanner/internal/decoder.h"
#include "internal/run.h"

/* ---- the filter ---------------------------------------------------------------- */

/* What one ABI's calls the filter stops. Calls that change code: always
 * (the i386 old_mmap takes its arguments in memory), and mmap when it maps
 * code or may replace some (PROT_EXEC or MAP_FIXED). Calls that change
 * signal state (runsig.c): returns from handlers and the rare old i386
 * calls always, the others when args[1] is not NULL (a change, not a
 * query). */
typedef struct filter_abi {
    uint32_t arch;
    long mmap;
    const long *code, *signal, *signal_changing;
    size_t ncode, nsignal, nsignal_changing;
} filter_abi;

static const long code64[] = { SYS_mprotect, SYS_pkey_mprotect, SYS_munmap, SYS_mremap,
                               SYS_modify_ldt };
static const long signal64[] = { SYS_rt_sigreturn };
static const long signal_changing64[] = { SYS_rt_sigaction, SYS_rt_sigprocmask };
static const long code32[] = { I386_OLD_MMAP, I386_MPROTECT, I386_PKEY_MPROTECT, I386_MUNMAP,
                               I386_MREMAP, I386_MODIFY_LDT };
static const long signal32[] = { I386_SIGNAL, I386_SIGACTION, I386_SSETMASK, I386_SIGPROCMASK,
                                 I386_SIGRETURN, I386_RT_SIGRETURN };
static const long signal_changing32[] = { I386_RT_SIGACTION, I386_RT_SIGPROCMASK };

#define COUNT(a) (sizeof (a) / sizeof (a)[0])
static const filter_abi filter_abis[] = {
    { AUDIT_ARCH_X86_64, SYS_mmap, code64, signal64, signal_changing64,
      COUNT(code64), COUNT(signal64), COUNT(signal_changing64) },
    { AUDIT_ARCH_I386, I386_MMAP2, code32, signal32, signal_changing32,
      COUNT(code32), COUNT(signal32), COUNT(signal_changing32) },
};

enum { FILTER_MAX = 96 };

/* A filter under construction: jumps name the index of their target,
 * resolved to BPF's relative offsets by filter_jump. */
typedef struct filter {
    struct sock_filter f[FILTER_MAX];
    size_t n;
} filter;

static size_t filter_stmt(filter *f, uint16_t code, uint32_t k)
{
    f->f[f->n] = (struct sock_filter)BPF_STMT(code, k);
    return f->n++;
}

static size_t filter_load(filter *f, size_t offset)
{
    return filter_stmt(f, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offset);
}

/* A conditional jump whose targets are set later with filter_target. */
static size_t filter_jump(filter *f, uint16_t op, uint32_t k)
{
    f->f[f->n] = (struct sock_filter)BPF_JUMP(BPF_JMP | op | BPF_K, k, 0, 0);
    return f->n++;
}

static void filter_target(filter *f, size_t jump, size_t if_true, size_t if_false)
{
    f->f[jump].jt = (uint8_t)(if_true - jump - 1);
    f->f[jump].jf = (uint8_t)(if_false - jump - 1);
}

/* The block of one ABI; a call of another ABI skips it. */
static void filter_add_abi(filter *f, const filter_abi *abi, bool signals)
{
    size_t args1 = offsetof(struct seccomp_data, args[1]);
    filter_load(f, offsetof(struct seccomp_data, arch));
    size_t arch = filter_jump(f, BPF_JEQ, abi->arch);
    filter_load(f, offsetof(struct seccomp_data, nr));
    size_t always[16], changing[8];
    size_t nalways = 0, nchanging = 0;
    for (size_t k = 0; k < abi->ncode; k++)
        always[nalways++] = filter_jump(f, BPF_JEQ, (uint32_t)abi->code[k]);
    for (size_t k = 0; signals && k < abi->nsignal; k++)
        always[nalways++] = filter_jump(f, BPF_JEQ, (uint32_t)abi->signal[k]);
    for (size_t k = 0; signals && k < abi->nsignal_changing; k++)
        changing[nchanging++] = filter_jump(f, BPF_JEQ, (uint32_t)abi->signal_changing[k]);
    size_t mmap = filter_jump(f, BPF_JEQ, (uint32_t)abi->mmap);
    size_t mmap_prot = filter_load(f, offsetof(struct seccomp_data, args[2]));
    size_t exec = filter_jump(f, BPF_JSET, PROT_EXEC);
    filter_load(f, offsetof(struct seccomp_data, args[3]));
    size_t fixed = filter_jump(f, BPF_JSET, MAP_FIXED);
    size_t arg1 = filter_load(f, args1);
    size_t arg1_low = filter_jump(f, BPF_JEQ, 0);
    size_t arg1_high_load = filter_load(f, args1 + 4);
    size_t arg1_high = filter_jump(f, BPF_JEQ, 0);
    size_t allow = filter_stmt(f, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    size_t trace = filter_stmt(f, BPF_RET | BPF_K, SECCOMP_RET_TRACE);
    for (size_t k = 0; k < nalways; k++)
        filter_target(f, always[k], trace, always[k] + 1);
    for (size_t k = 0; k < nchanging; k++)
        filter_target(f, changing[k], arg1, changing[k] + 1);
    filter_target(f, mmap, mmap_prot, allow);
    filter_target(f, exec, trace, exec + 1);
    filter_target(f, fixed, trace, allow);
    filter_target(f, arg1_low, arg1_high_load, trace);
    filter_target(f, arg1_high, allow, trace);
    filter_target(f, arch, arch + 1, f->n);
}

/* The program's filter; with signals, the calls that change its signal
 * state stop too (runsig.c). */
static size_t build_filter(struct sock_filter out[FILTER_MAX], bool signals)
{
    filter f = { .n = 0 };
    for (size_t i = 0; i < COUNT(filter_abis); i++)
        filter_add_abi(&f, &filter_abis[i], signals);
    filter_stmt(&f, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    memcpy(out, f.f, f.n * sizeof *out);
    return f.n;
}

/* The call a filtered stop is for, the same for both ABIs. */
static long normalize_syscall(uint32_t arch, long nr)
{
    if (arch == AUDIT_ARCH_X86_64) {
        switch (nr) {
        case SYS_mmap: return RUN_SC_MMAP;
        case SYS_mprotect: case SYS_pkey_mprotect: return RUN_SC_MPROTECT;
        case SYS_munmap: return RUN_SC_MUNMAP;
        case SYS_mremap: return RUN_SC_MREMAP;
        case SYS_modify_ldt: return RUN_SC_MODIFY_LDT;
        case SYS_rt_sigaction: return RUN_SC_SIGACTION;
        case SYS_rt_sigprocmask: return RUN_SC_SIGPROCMASK;
        case SYS_rt_sigreturn: return RUN_SC_SIGRETURN;
        }
    } else if (arch == AUDIT_ARCH_I386) {
        switch (nr) {
        case I386_MMAP2: case I386_OLD_MMAP: return RUN_SC_MMAP;
        case I386_MPROTECT: case I386_PKEY_MPROTECT: return RUN_SC_MPROTECT;
        case I386_MUNMAP: return RUN_SC_MUNMAP;
        case I386_MREMAP: return RUN_SC_MREMAP;
        case I386_MODIFY_LDT: return RUN_SC_MODIFY_LDT;
        case I386_RT_SIGACTION: return RUN_SC_SIGACTION;
        case I386_SIGACTION: return RUN_SC_OLD_SIGACTION;
        case I386_SIGNAL: return RUN_SC_SIGNAL;
        case I386_RT_SIGPROCMASK: return RUN_SC_SIGPROCMASK;
        case I386_SIGPROCMASK: case I386_SSETMASK: return RUN_SC_OLD_SIGPROCMASK;
        case I386_RT_SIGRETURN: case I386_SIGRETURN: return RUN_SC_SIGRETURN;
        }
    }
    return RUN_SC_OTHER;
}

/* ---- messages and endings -------------------------------------------------------- */

void run_log(run_engine *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("popek: ", e->log);
    vfprintf(e->log, fmt, ap);
    fputc('\n', e->log);
    va_end(ap);
}

void run_end(run_engine *e, int status, const char *fmt, ...)
{
    if (e->ended)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->end_report, sizeof e->end_report, fmt, ap);
    va_end(ap);
    e->ended = true;
    e->end_status = status;
}

/* ---- threads and processes ------------------------------------------------------- */

static run_thread *find_thread(run_engine *e, pid_t tid)
{
    for (size_t i = 0; i < e->nthreads; i++)
        if (e->threads[i]->tid == tid)
            return e->threads[i];
    return NULL;
}

static run_thread *add_thread(run_engine *e, pid_t tid, run_process *p)
{
    run_thread *t = calloc(1, sizeof *t);
    if (!t || !run_grow((void **)&e->threads, &e->threads_cap, e->nthreads, sizeof *e->threads)) {
        free(t);
        return NULL;
    }
    t->tid = tid;
    t->proc = p;
    /* A process starts with IF 1 and IOPL 0 (and ID as it is: 0). */
    t->vflags = PK_FLAG_IF;
    if (p)
        p->threads++;
    e->threads[e->nthreads++] = t;
    e->stats->threads++;
    return t;
}

static bool add_process(run_engine *e, run_process *p)
{
    if (!run_grow((void **)&e->procs, &e->procs_cap, e->nprocs, sizeof *e->procs))
        return false;
    e->procs[e->nprocs++] = p;
    e->stats->processes++;
    return true;
}

static void drop_process(run_engine *e, run_process *p)
{
    for (size_t i = 0; i < e->nprocs; i++)
        if (e->procs[i] == p) {
            e->procs[i] = e->procs[--e->nprocs];
            break;
        }
    run_process_free(p);
}

static void drop_thread(run_engine *e, run_thread *t)
{
    for (size_t i = 0; i < e->nthreads; i++)
        if (e->threads[i] == t) {
            e->threads[i] = e->threads[--e->nthreads];
            break;
        }
    if (t->proc)
        run_code_settle(t->proc, t->tid);
    if (t->proc && --t->proc->threads == 0)
        drop_process(e, t->proc);
    free(t);
}

bool run_read_status(pid_t tid, run_status *s)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    *s = (run_status){ .tgid = -1 };
    unsigned long long v;
    char state;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "State: %c", &state) == 1 && (state == 'Z' || state == 'X'))
            s->dying = true;
        else if (sscanf(line, "Tgid: %d", &s->tgid) == 1)
            continue;
        else if ((sscanf(line, "SigPnd: %llx", &v) == 1 || sscanf(line, "ShdPnd: %llx", &v) == 1) &&
                 (v & (1ull << (SIGKILL - 1))))
            s->dying = true;
        else if (sscanf(line, "SigBlk: %llx", &v) == 1)
            s->blocked = v;
        else if (sscanf(line, "SigIgn: %llx", &v) == 1)
            s->ignored = v;
        else if (sscanf(line, "SigCgt: %llx", &v) == 1)
            s->caught = v;
    }
    fclose(f);
    return true;
}

static pid_t thread_group_of(pid_t tid)
{
    run_status s;
    return run_read_status(tid, &s) ? s.tgid : -1;
}

static bool thread_dying(pid_t tid)
{
    run_status s;
    return !run_read_status(tid, &s) || s.dying;
}

/* Whether tid is still in a ptrace stop (a thread killed meanwhile is
 * not: its ptrace calls fail with ESRCH). */
static bool still_stopped(pid_t tid)
{
    struct user_regs_struct r;
    return ptrace(PTRACE_GETREGS, tid, 0, &r) == 0 || errno != ESRCH;
}

/* ---- resuming ---------------------------------------------------------------------- */

/* A signal that arrived while the monitor was working in t is sent again,
 * now that t can take it. */
static void redeliver(run_thread *t)
{
    if (t->deferred && t->proc) {
        syscall(SYS_tgkill, t->proc->pid, t->tid, t->deferred);
        t->deferred = 0;
    }
}

/* Lets t go on: stepping, or to its system call's return, as it waits. */
static void resume(run_engine *e, run_thread *t, int sig)
{
    enum __ptrace_request how = PTRACE_CONT;
    if (t->pending == RUN_NATIVE_STEP || t->pending == RUN_WRITE_STEP ||
        t->pending == RUN_BLOCK_STEP)
        how = PTRACE_SINGLESTEP;
    else if (t->pending == RUN_SYSCALL_EXIT || t->pending == RUN_EXEC_EXIT)
        how = PTRACE_SYSCALL;
    if (!sig)
        redeliver(t);
    if (ptrace(how, t->tid, 0, (void *)(long)sig) != 0 && errno != ESRCH)
        run_end(e, PK_STATUS_MONITOR_ERROR, "ptrace(resume %d): %s", (int)t->tid,
                strerror(errno));
}

/* ---- system calls made in the program ------------------------------------------- */

pk_status run_get_regs(run_thread *t, struct user_regs_struct *r, pk_error *err)
{
    if (ptrace(PTRACE_GETREGS, t->tid, 0, r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_GETREGS, %d): %s", (int)t->tid,
                       strerror(errno));
    return PK_OK;
}

pk_status run_set_regs(run_thread *t, const struct user_regs_struct *r, pk_error *err)
{
    if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS, %d): %s", (int)t->tid,
                       strerror(errno));
    return PK_OK;
}

/* The instruction that makes a system call in the stub: SYSCALL, or
 * INT 0x80 in an i386 program; then INT3, where the monitor takes over. */
static const uint8_t syscall64[] = { 0x0f, 0x05, 0xcc };
static const uint8_t syscall32[] = { 0xcd, 0x80, 0xcc };

/* Runs the system call set up in t's registers from code at at, to the
 * INT3 after it; or, when that INT3's SIGTRAP would disturb the program's
 * signal state (runsig.c), to the call's return, a stop of ptrace's own. */
static pk_status run_call(run_engine *e, run_thread *t, uint64_t at, pk_error *err)
{
    bool by_trap = run_sig_quiet(t, SIGTRAP);
    enum __ptrace_request how = by_trap ? PTRACE_CONT : PTRACE_SYSCALL;
    for (;;) {
        if (ptrace(how, t->tid, 0, 0) != 0)
            return pk_fail(err, PK_ERR_INTERNAL, "ptrace(resume, %d): %s", (int)t->tid,
                           strerror(errno));
        int status;
        if (waitpid(t->tid, &status, __WALL) < 0)
            return pk_fail(err, PK_ERR_INTERNAL, "waitpid(%d): %s", (int)t->tid,
                           strerror(errno));
        e->stats->stops++;
        if (!WIFSTOPPED(status))
            return pk_fail(err, PK_ERR_INTERNAL, "thread %d ended during a system call "
                           "the monitor made", (int)t->tid);
        int event = status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_SECCOMP || event == PTRACE_EVENT_STOP)
            continue;
        if (event == 0 && sig == (SIGTRAP | 0x80)) {
            struct __ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) > 0 &&
                info.op == PTRACE_SYSCALL_INFO_EXIT)
                return PK_OK;
            continue;
        }
        if (event == 0 && sig == SIGTRAP && by_trap) {
            struct user_regs_struct r;
            PK_CHECK(run_get_regs(t, &r, err));
            /* (at + 2: a single step armed when the monitor took the thread
             * over, by a signal that came before the step, traps after the
             * call instead of its INT3) */
            if (r.rip == at + 3 || r.rip == at + 2)
                return PK_OK;
            return pk_fail(err, PK_ERR_INTERNAL, "thread %d trapped at 0x%llx during a system "
                           "call the monitor made", (int)t->tid, (unsigned long long)r.rip);
        }
        if (event == 0) {
            /* The program's signal, come meanwhile: sent again later. */
            if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGTRAP)
                return pk_fail(err, PK_ERR_INTERNAL, "signal %d in a system call the monitor "
                               "made in thread %d", sig, (int)t->tid);
            t->deferred = sig;
        }
    }
}

pk_status run_inject(run_engine *e, run_thread *t, long nr, const uint64_t args[6], long *ret,
                     pk_error *err)
{
    run_process *p = t->proc;
    struct user_regs_struct saved, call;
    PK_CHECK(run_get_regs(t, &saved, err));
    const uint8_t *code = p->bits == 32 ? syscall32 : syscall64;
    uint64_t at = p->stub;
    uint8_t under[3];
    if (!at) {
        /* No stub yet (just after exec, one thread): the call is made from
         * where the thread stands, over bytes put back afterwards. */
        at = saved.rip;
        if (!run_peek(p, at, under, sizeof under) || !run_poke(p, at, code, 3))
            return pk_fail(err, PK_ERR_INTERNAL, "cannot write a system call at 0x%llx in "
                           "process %d", (unsigned long long)at, (int)p->pid);
    }
    call = saved;
    call.rip = at;
    call.rax = (unsigned long long)nr;
    call.orig_rax = (unsigned long long)-1;
    call.eflags &= ~(unsigned long long)PK_FLAG_TF;
    if (p->bits == 32) {
        call.rbx = args[0]; call.rcx = args[1]; call.rdx = args[2];
        call.rsi = args[3]; call.rdi = args[4]; call.rbp = args[5];
    } else {
        call.rdi = args[0]; call.rsi = args[1]; call.rdx = args[2];
        call.r10 = args[3]; call.r8 = args[4]; call.r9 = args[5];
    }
    pk_status s = run_set_regs(t, &call, err);
    if (s == PK_OK)
        s = run_call(e, t, at, err);
    struct user_regs_struct done;
    if (s == PK_OK)
        s = run_get_regs(t, &done, err);
    if (at != p->stub && !run_poke(p, at, under, sizeof under) && s == PK_OK)
        s = pk_fail(err, PK_ERR_INTERNAL, "cannot restore the code at 0x%llx",
                    (unsigned long long)at);
    PK_CHECK(s);
    e->stats->injected++;
    *ret = p->bits == 32 ? (long)(int32_t)done.rax : (long)done.rax;
    return run_set_regs(t, &saved, err);
}

pk_status run_protect(run_engine *e, run_thread *t, uint64_t addr, uint64_t len, int prot,
                      pk_error *err)
{
    long nr = t->proc->bits == 32 ? I386_MPROTECT : SYS_mprotect;
    uint64_t args[6] = { addr, len, (uint64_t)prot };
    long ret;
    PK_CHECK(run_inject(e, t, nr, args, &ret, err));
    if (ret == -ENOMEM)
        return PK_OK; /* another thread unmapped it meanwhile */
    if (ret != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "mprotect(0x%llx, %llu) in process %d: %s",
                       (unsigned long long)addr, (unsigned long long)len, (int)t->proc->pid,
                       strerror((int)-ret));
    return PK_OK;
}

pk_status run_map(run_engine *e, run_thread *t, uint64_t at, uint64_t size, uint64_t *addr,
                  pk_error *err)
{
    run_process *p = t->proc;
    long nr = p->bits == 32 ? I386_MMAP2 : SYS_mmap;
    uint64_t args[6] = { at, size, PROT_READ | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0),
                         p->bits == 32 ? 0xffffffffu : (uint64_t)-1, 0 };
    long ret;
    PK_CHECK(run_inject(e, t, nr, args, &ret, err));
    *addr = 0;
    if (ret == -EEXIST || (at && (uint64_t)ret != at && !(ret < 0 && ret > -4096)))
        return PK_OK; /* taken (an old kernel maps elsewhere instead) */
    if (ret < 0 && ret > -4096)
        return pk_fail(err, PK_ERR_INTERNAL, "mmap in process %d: %s", (int)p->pid,
                       strerror((int)-ret));
    *addr = p->bits == 32 ? (uint32_t)ret : (uint64_t)ret;
    if (!run_own(p, *addr, *addr + size))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    return PK_OK;
}

/* Maps the monitor's system-call stub in t's process. */
static pk_status map_stub(run_engine *e, run_thread *t, pk_error *err)
{
    run_process *p = t->proc;
    uint64_t stub;
    PK_CHECK(run_map(e, t, 0, 4096, &stub, err));
    if (!run_poke(p, stub, p->bits == 32 ? syscall32 : syscall64, 3))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot write the monitor's page in process %d",
                       (int)p->pid);
    p->stub = stub;
    return PK_OK;
}

/* ---- stops ------------------------------------------------------------------------- */

/* execve returned in t: the new program's first instruction has not run. */
static pk_status exec_done(run_engine *e, run_thread *t, pk_error *err)
{
    struct user_regs_struct r;
    PK_CHECK(run_get_regs(t, &r, err));
    run_process *p = t->proc;
    p->bits = r.cs == 0x23 ? 32 : 64;
    if (e->opts->no_patch)
        return PK_OK;
    if (run_sig_exec(p) != PK_OK)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    run_sig_read_mask(t);
    PK_CHECK(map_stub(e, t, err));
    return run_code_sync(e, t, err);
}

/* A filtered system call is about to run in t. */
static void syscall_entry(run_engine *e, run_thread *t)
{
    struct __ptrace_syscall_info info;
    e->stats->syscalls++;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) <= 0 ||
        info.op != PTRACE_SYSCALL_INFO_SECCOMP) {
        resume(e, t, 0);
        return;
    }
    t->sc_nr = normalize_syscall(info.arch, (long)info.seccomp.nr);
    t->sc_compat = info.arch == AUDIT_ARCH_I386;
    for (int i = 0; i < 6; i++)
        t->sc_args[i] = info.seccomp.args[i];
    uint32_t args32[6];
    if (info.arch == AUDIT_ARCH_I386 && info.seccomp.nr == I386_OLD_MMAP &&
        run_peek(t->proc, info.seccomp.args[0], args32, sizeof args32))
        for (int i = 0; i < 6; i++)
            t->sc_args[i] = args32[i];
    bool wanted;
    switch (t->sc_nr) {
    case RUN_SC_MMAP:
        wanted = (t->sc_args[2] & PROT_EXEC) ||
                 run_code_touches(t->proc, t->sc_args[0], t->sc_args[1]);
        break;
    case RUN_SC_MPROTECT:
        /* Of interest when it makes code, or touches code the monitor knows. */
        wanted = (t->sc_args[2] & PROT_EXEC) ||
                 run_code_touches(t->proc, t->sc_args[0], t->sc_args[1]);
        break;
    case RUN_SC_MUNMAP:
    case RUN_SC_MREMAP:
        wanted = run_code_touches(t->proc, t->sc_args[0], t->sc_args[1]);
        break;
    case RUN_SC_MODIFY_LDT:
        wanted = t->sc_args[0] == 1 || t->sc_args[0] == 0x11; /* the writing functions */
        break;
    case RUN_SC_SIGACTION: case RUN_SC_OLD_SIGACTION: case RUN_SC_SIGNAL:
    case RUN_SC_SIGPROCMASK: case RUN_SC_OLD_SIGPROCMASK: case RUN_SC_SIGRETURN:
        wanted = run_sig_syscall_entry(t);
        break;
    default:
        wanted = false;
    }
    bool code = t->sc_nr >= RUN_SC_MMAP && t->sc_nr <= RUN_SC_MREMAP;
    if (e->opts->no_patch && code)
        wanted = false;
    t->pending = wanted ? RUN_SYSCALL_EXIT : RUN_NOTHING;
    pk_error err;
    if (wanted && code && run_code_enter(e, t, &err) != PK_OK)
        run_end(e, PK_STATUS_UNSUPPORTED, "%s", err.msg);
    resume(e, t, 0);
}

/* A filtered system call returned in t. */
static pk_status syscall_exit(run_engine *e, run_thread *t, pk_error *err)
{
    struct __ptrace_syscall_info info;
    t->pending = RUN_NOTHING;
    bool returned = ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) > 0 &&
                    info.op == PTRACE_SYSCALL_INFO_EXIT;
    if (t->sc_nr >= RUN_SC_SIGACTION) {
        run_sig_syscall_exit(t);
        struct user_regs_struct r;
        if (t->sc_nr == RUN_SC_SIGRETURN && t->proc->table.njumps) {
            /* back to an instruction that runs in a trampoline (deliver) */
            PK_CHECK(run_get_regs(t, &r, err));
            uint64_t resume_at = run_resume_at(t->proc, r.rip);
            if (resume_at != r.rip) {
                r.rip = resume_at;
                PK_CHECK(run_set_regs(t, &r, err));
            }
        }
        return PK_OK;
    }
    if (!returned || info.exit.is_error)
        return t->sc_nr == RUN_SC_MODIFY_LDT ? PK_OK : run_code_failed(e, t, err);
    if (t->sc_nr == RUN_SC_MODIFY_LDT) {
        bool had = t->proc->has_ldt;
        t->proc->has_ldt = true;
        return had ? PK_OK : run_fast_pages(e, t, err); /* SLDT shows it now */
    }
    t->sc_ret = (long)info.exit.rval;
    return run_code_sync(e, t, err);
}

/* t, a thread of a process that just called exec (PTRACE_EVENT_EXEC). */
static void exec_event(run_engine *e, run_thread *t)
{
    unsigned long former = 0;
    ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &former);
    /* Every other thread of the old program is gone; the one that called
     * exec now has the leader's id. */
    run_process *p = t->proc;
    for (size_t i = 0; i < e->nthreads;) {
        run_thread *o = e->threads[i];
        if (o != t && o->proc == p) {
            drop_thread(e, o);
            continue;
        }
        i++;
    }
    run_process_reset(p);
    e->exec_seen = true;
    t->vflags = PK_FLAG_IF;
    t->sc_nr = RUN_SC_OTHER;
    t->pending = RUN_EXEC_EXIT;
    resume(e, t, 0);
}

/* The flags of the clone or clone3 call t stands in (at its event stop). */
static uint64_t clone_flags(run_thread *t)
{
    struct user_regs_struct r;
    pk_error err;
    uint64_t flags = 0;
    if (run_get_regs(t, &r, &err) != PK_OK)
        return 0;
    bool compat = t->proc->bits == 32;
    uint64_t arg0 = compat ? (uint32_t)r.rbx : r.rdi;
    if (r.orig_rax == (compat ? I386_CLONE : SYS_clone))
        return arg0;
    if (r.orig_rax == SYS_clone3 && run_peek(t->proc, arg0, &flags, sizeof flags))
        return flags; /* clone3: the same number in both ABIs; flags come first */
    return 0;
}

/* t cloned, forked or vforked (event): the new thread or process. */
static void child_event(run_engine *e, run_thread *t, int event)
{
    unsigned long msg = 0;
    ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &msg);
    pid_t child = (pid_t)msg;
    run_process *p = t->proc;
    if (event == PTRACE_EVENT_CLONE && thread_group_of(child) == p->pid) {
        /* a thread of the same process */
    } else {
        bool share = clone_flags(t) & CLONE_SIGHAND; /* (a fork event, with SIGCHLD) */
        run_process *copy = run_process_fork(p, child, share);
        if (!copy || !add_process(e, copy)) {
            run_process_free(copy);
            run_end(e, PK_STATUS_MONITOR_ERROR, "out of memory following process %d",
                    (int)child);
            return;
        }
        p = copy;
    }
    run_thread *c = find_thread(e, child);
    if (c) {
        /* Its first stop came before this event: it waited for it. */
        c->proc = p;
        p->threads++;
        c->vflags = t->vflags;
        resume(e, c, 0);
    } else if ((c = add_thread(e, child, p)) != NULL) {
        c->vflags = t->vflags;
    } else {
        run_end(e, PK_STATUS_MONITOR_ERROR, "out of memory following thread %d", (int)child);
        return;
    }
    resume(e, t, 0);
}

/* Makes the SIGTRAP t stopped with the one a single step raises, at rip
 * (as Linux reports TF traps: TRAP_TRACE, the address of the next
 * instruction). */
static void single_step_trap(run_thread *t, uint64_t rip)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGTRAP;
    si.si_code = TRAP_TRACE;
    si.si_addr = (void *)(uintptr_t)rip;
    ptrace(PTRACE_SETSIGINFO, t->tid, 0, &si);
}

/* The program's signal held back for a fault to run again (signal_stop)
 * waits again. */
static pk_status requeue(run_engine *e, run_thread *t, pk_error *err)
{
    if (!t->requeue.si_signo)
        return PK_OK;
    siginfo_t si = t->requeue;
    t->requeue.si_signo = 0;
    return run_sig_requeue(e, t, &si, err);
}

static pk_status consume(run_engine *e, run_thread *t, int sig, pk_error *err);

/* t goes on with the program's own signal sig. A handler is shown the
 * address of the instruction that ran in a trampoline, not the
 * trampoline's (its return goes back there: syscall_exit). */
static pk_status deliver(run_engine *e, run_thread *t, int sig, pk_error *err)
{
    struct user_regs_struct r;
    uint64_t original;
    /* (a signal sent again stops the thread at the monitor's INT3, whose
     * siginfo would then stand for sig's) */
    siginfo_t si;
    bool have_si = ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) == 0;
    PK_CHECK(requeue(e, t, err));
    if (have_si)
        ptrace(PTRACE_SETSIGINFO, t->tid, 0, &si);
    /* A fault inside a fast-path block (the kernel's, not one sent): with
     * what the block did undone, the monitor emulates the site, which
     * faults as natively, or not. */
    if (t->proc->table.njumps && (sig == SIGSEGV || sig == SIGBUS) && have_si &&
        si.si_code > 0) {
        PK_CHECK(run_get_regs(t, &r, err));
        if (run_undo_block(t->proc, &r)) {
            PK_CHECK(run_set_regs(t, &r, err));
            return consume(e, t, sig, err);
        }
    }
    /* Any other signal waits for the thread to leave the block (stepped
     * there: block_step), so that its handler sees, and may change, the
     * program's own state. Other signals but the faults wait meanwhile:
     * each would stop a step before it runs. */
    if (t->proc->nplaced && t->pending == RUN_NOTHING) {
        PK_CHECK(run_get_regs(t, &r, err));
        uint64_t wait = ~(uint64_t)0; /* all but the faults */
        static const int faults[] = { SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE };
        for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
            wait &= ~(1ull << (faults[i] - 1));
        if (run_in_block(t->proc, r.rip) && have_si &&
            ptrace(PTRACE_GETSIGMASK, t->tid, sizeof t->held_mask, &t->held_mask) == 0) {
            t->held = si;
            if (ptrace(PTRACE_SETSIGMASK, t->tid, sizeof wait, &wait) != 0)
                return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETSIGMASK, %d): %s",
                               (int)t->tid, strerror(errno));
            t->held_tf = r.eflags & PK_FLAG_TF;
            t->pending = RUN_BLOCK_STEP;
            resume(e, t, 0);
            return PK_OK;
        }
    }
    if (t->proc->table.njumps && run_sig_handled(t->proc, sig)) {
        PK_CHECK(run_get_regs(t, &r, err));
        /* (only where the handler surely runs: an ignored signal would
         * leave the thread at the original address, among a jump's bytes) */
        if ((original = run_original_of(e, t->proc, r.rip)) != 0 &&
            run_sig_caught_now(t->tid, sig)) {
            r.rip = original;
            PK_CHECK(run_set_regs(t, &r, err));
        }
    }
    run_sig_delivered(t, sig);
    resume(e, t, sig);
    return PK_OK;
}

/* t goes on past the forced signal sig the monitor took for itself. */
static pk_status consume(run_engine *e, run_thread *t, int sig, pk_error *err)
{
    PK_CHECK(run_sig_mend(e, t, sig, err));
    PK_CHECK(requeue(e, t, err));
    resume(e, t, 0);
    return PK_OK;
}

/* Lets t go on after a site or a step of the monitor's (its SIGTRAP), at
 * rip: with the trap a single step raises when the program had TF set. */
static pk_status resume_traced(run_engine *e, run_thread *t, uint64_t rip, bool traced,
                               pk_error *err)
{
    if (!traced)
        return consume(e, t, SIGTRAP, err);
    single_step_trap(t, rip);
    return deliver(e, t, SIGTRAP, err);
}

/* Whether a SIGSEGV may come from the monitor's hold on written code: an
 * access the protection denied, or a store Linux's UMIP emulation could
 * not make there (it reports SEGV_MAPERR). run_code_fault decides. */
static bool held_fault(const siginfo_t *si)
{
    return si->si_code == SEGV_ACCERR || si->si_code == SEGV_MAPERR;
}

/* A stop of t's while it steps to the end of a fast-path block (deliver):
 * once out, its mask is its own again, the signal it holds goes on, and
 * the TF its steps may have left in its flags (a block's PUSHF and POPF
 * pair) goes. True when the stop is dealt with; false for another signal
 * (a fault of the block's), which goes on as usual while the held one
 * waits (requeue). */
static bool block_step(run_engine *e, run_thread *t, int sig, const siginfo_t *si,
                       pk_error *err, pk_status *status)
{
    struct user_regs_struct r;
    if ((*status = run_get_regs(t, &r, err)) != PK_OK)
        return true;
    bool stepped = sig == SIGTRAP && si->si_code == TRAP_TRACE;
    if (stepped && run_in_block(t->proc, r.rip)) {
        resume(e, t, 0);
        return true;
    }
    t->pending = RUN_NOTHING;
    if (ptrace(PTRACE_SETSIGMASK, t->tid, sizeof t->held_mask, &t->held_mask) != 0) {
        *status = pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETSIGMASK, %d): %s",
                          (int)t->tid, strerror(errno));
        return true;
    }
    if (!t->held_tf && (r.eflags & PK_FLAG_TF)) {
        r.eflags &= ~(unsigned long long)PK_FLAG_TF;
        if ((*status = run_set_regs(t, &r, err)) != PK_OK)
            return true;
    }
    if (!stepped) {
        if (!t->requeue.si_signo)
            t->requeue = t->held;
        return false;
    }
    ptrace(PTRACE_SETSIGINFO, t->tid, 0, &t->held);
    *status = deliver(e, t, t->held.si_signo, err);
    return true;
}

/* t stopped with signal sig. */
static pk_status signal_stop(run_engine *e, run_thread *t, int sig, pk_error *err)
{
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) != 0) {
        resume(e, t, sig);
        return PK_OK;
    }
    pk_status s = PK_OK;
    if (t->pending == RUN_BLOCK_STEP && block_step(e, t, sig, &si, err, &s))
        return s;
    struct user_regs_struct r;
    if (t->pending == RUN_NATIVE_STEP || t->pending == RUN_WRITE_STEP) {
        PK_CHECK(run_get_regs(t, &r, err));
        uint64_t end = t->step_slot + t->step_len;
        bool stepped = sig == SIGTRAP && ((si.si_code != SI_KERNEL && si.si_code > 0) ||
                                          (t->pending == RUN_NATIVE_STEP && r.rip == end + 1));
        if (sig == SIGTRAP && !stepped && run_sig_forced(t, SIGTRAP) &&
            (t->pending == RUN_NATIVE_STEP ? r.rip == end || r.rip == end + 1
                                           : r.rip != t->step_from)) {
            /* The step's trap, dropped for the program's own SIGTRAP,
             * pending while blocked (see swallowed below): it waits again
             * once the step is done (consume). */
            stepped = true;
            t->requeue = si;
        }
        if (t->pending == RUN_NATIVE_STEP) {
            /* The copy stores to written code the monitor holds: let the
             * store through as the program's own, and step it again. */
            pk_status fs = PK_OK;
            if (sig == SIGSEGV && held_fault(&si) && !stepped &&
                run_code_fault(e, t, (uint64_t)(uintptr_t)si.si_addr, r.rip, err, &fs)) {
                PK_CHECK(fs);
                t->pending = RUN_NATIVE_STEP;
                return consume(e, t, sig, err);
            }
            /* Done, or a signal the copy raised (it is the site's, at the
             * site's address) or one that came before it ran. */
            PK_CHECK(run_native_done(e, t, &r, err));
            if (stepped)
                return resume_traced(e, t, r.rip, t->step_tf, err);
            e->stats->signals++;
            return deliver(e, t, sig, err);
        }
        PK_CHECK(run_code_write_done(e, t, r.rip, err));
        if (stepped)
            return resume_traced(e, t, r.rip, t->step_tf, err);
        /* The write did not happen (another fault, or a signal came first):
         * it runs again once this is dealt with. */
    }
    /* The monitor's INT3; or one whose SIGTRAP the kernel dropped for the
     * program's own, pending while blocked (or queued for the tracer while
     * ignored): force_sig drops a signal already pending, after resetting
     * its handler and unblocking it (run_sig_forced sees that). */
    bool swallowed = sig == SIGTRAP && si.si_code != SI_KERNEL && !e->opts->no_patch &&
                     run_sig_forced(t, SIGTRAP);
    if (sig == SIGTRAP && (si.si_code == SI_KERNEL || swallowed) && !e->opts->no_patch) {
        PK_CHECK(run_get_regs(t, &r, err));
        uint64_t at = r.rip - 1, then = 0;
        const pk_patch *site = run_site_at(t->proc, at), *via;
        pk_patch in_trampoline;
        if (site) {
            then = at + site->len;
        } else if ((via = run_via_at(t->proc, at)) != NULL) {
            in_trampoline = *via;
            in_trampoline.site = via->trampoline;
            site = &in_trampoline;
            then = at + 1;
        }
        uint8_t byte;
        bool int3 = run_peek(t->proc, at, &byte, 1) && byte == 0xcc;
        if (!int3 && !swallowed && (site || run_was_site(t->proc, at) ||
                                    pk_patch_table_jump_at(&t->proc->table, at))) {
            /* An INT3 of the monitor's that is gone since this thread hit
             * it: a site taken away, or the first byte of a jump or of
             * original bytes being written (INT3 first); run what is there
             * now. */
            r.rip = at;
            PK_CHECK(run_set_regs(t, &r, err));
            return consume(e, t, sig, err);
        }
        if (site && int3) {
            /* The program single-steps itself: the trap after the site. */
            bool traced = r.eflags & PK_FLAG_TF, blocked = run_sig_blocked(t, SIGTRAP);
            PK_CHECK(run_emulate_site(e, t, site, at, then, &r, err));
            t->step_tf = traced;
            if (swallowed) {
                /* The program's signal waits again (ignored, it is gone). */
                PK_CHECK(run_sig_mend(e, t, SIGTRAP, err));
                if (blocked)
                    PK_CHECK(run_sig_requeue(e, t, &si, err));
                resume(e, t, 0);
                return PK_OK;
            }
            /* Run natively, the step's own trap comes first. */
            return resume_traced(e, t, r.rip, traced && t->pending == RUN_NOTHING, err);
        }
    }
    if (sig == SIGSEGV && si.si_code <= 0 && !e->opts->no_patch &&
        run_sig_forced(t, SIGSEGV)) {
        /* A fault of the monitor's hold whose SIGSEGV the kernel dropped
         * for the program's own, pending while blocked (as with SIGTRAP
         * above): the access runs again, and faults afresh, and the
         * program's signal waits again after that (consume). */
        PK_CHECK(run_sig_mend(e, t, SIGSEGV, err));
        t->requeue = si;
        resume(e, t, 0);
        return PK_OK;
    }
    if (sig == SIGSEGV && held_fault(&si) && !e->opts->no_patch) {
        PK_CHECK(run_get_regs(t, &r, err));
        pk_status s = PK_OK;
        t->step_tf = r.eflags & PK_FLAG_TF; /* for a write stepped: the program's trap after */
        if (run_code_fault(e, t, (uint64_t)(uintptr_t)si.si_addr, r.rip, err, &s)) {
            PK_CHECK(s);
            return consume(e, t, sig, err);
        }
    }
    /* The SIGCONT that started the program is the monitor's, not its own. */
    if (sig == SIGCONT && !e->exec_seen && t->tid == t->proc->pid) {
        resume(e, t, 0);
        return PK_OK;
    }
    e->stats->signals++;
    return deliver(e, t, sig, err);
}

static void handle_stop(run_engine *e, pid_t tid, int status, pid_t main_pid,
                        int *main_status)
{
    run_thread *t = find_thread(e, tid);
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        if (tid == main_pid)
            *main_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (t)
            drop_thread(e, t);
        return;
    }
    if (!WIFSTOPPED(status))
        return;
    if (!t) {
        /* A new thread or process whose parent's event is still to come:
         * it waits, stopped, until then. */
        if (!(t = add_thread(e, tid, NULL))) {
            run_end(e, PK_STATUS_MONITOR_ERROR, "out of memory following thread %d", (int)tid);
        } else {
            t->seen = true;
            run_sig_read_mask(t);
        }
        return;
    }
    int event = status >> 16, sig = WSTOPSIG(status);
    if (!t->seen) {
        t->seen = true;
        run_sig_read_mask(t);
        if (event == PTRACE_EVENT_STOP) {
            resume(e, t, 0);
            return;
        }
    }
    pk_error err = { { 0 } };
    pk_status s = PK_OK;
    switch (event) {
    case PTRACE_EVENT_EXEC:
        exec_event(e, t);
        break;
    case PTRACE_EVENT_CLONE:
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK:
        child_event(e, t, event);
        break;
    case PTRACE_EVENT_SECCOMP:
        syscall_entry(e, t);
        break;
    case PTRACE_EVENT_STOP:
        /* A group stop (SIGSTOP and the like) lasts until SIGCONT. */
        if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
            ptrace(PTRACE_LISTEN, tid, 0, 0);
        else
            resume(e, t, 0);
        break;
    case 0:
        if (sig == (SIGTRAP | 0x80)) {
            if (t->pending == RUN_EXEC_EXIT) {
                t->pending = RUN_NOTHING;
                s = exec_done(e, t, &err);
            } else {
                s = syscall_exit(e, t, &err);
            }
            if (s == PK_OK)
                resume(e, t, 0);
        } else {
            s = signal_stop(e, t, sig, &err);
        }
        break;
    default:
        resume(e, t, 0);
    }
    /* A thread killed under the monitor (another called exit_group) fails
     * its ptrace calls: it is gone, not the monitor broken. */
    if (s != PK_OK && !thread_dying(tid) && still_stopped(tid))
        run_end(e, s == PK_ERR_UNSUPPORTED ? PK_STATUS_UNSUPPORTED : PK_STATUS_MONITOR_ERROR,
                "%s", err.msg);
}

/* ---- the run ------------------------------------------------------------------------- */

/* The program's path: argv0 itself when it names a directory, else the
 * first executable file of that name in PATH. */
static bool find_program(const char *argv0, char *path, size_t size)
{
    struct stat st;
    if (strchr(argv0, '/')) {
        snprintf(path, size, "%s", argv0);
        return access(path, X_OK) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    }
    const char *dirs = getenv("PATH");
    if (!dirs || !*dirs)
        dirs = "/usr/local/bin:/usr/bin:/bin";
    while (*dirs) {
        size_t n = strcspn(dirs, ":");
        snprintf(path, size, "%.*s%s%s", (int)n, dirs, n ? "/" : "", argv0);
        if (access(path, X_OK) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            return true;
        dirs += n + (dirs[n] == ':');
    }
    return false;
}

/* The child: waits to be seized, takes the filter, becomes the program. */
static void become_program(const char *path, char *const argv[], bool signals)
{
    struct sock_filter f[FILTER_MAX];
    struct sock_fprog prog = { .len = (unsigned short)build_filter(f, signals), .filter = f };
    raise(SIGSTOP);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        fprintf(stderr, "popek: cannot install the seccomp filter: %s\n", strerror(errno));
        _exit(PK_STATUS_MONITOR_ERROR);
    }
    execv(path, argv);
    fprintf(stderr, "popek: %s: %s\n", path, strerror(errno));
    _exit(127);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

pk_status pk_run(char *const argv[], const pk_run_options *opts, pk_run_result *result,
                 pk_error *err)
{
    memset(result, 0, sizeof *result);
    char path[4096];
    if (!argv[0] || !find_program(argv[0], path, sizeof path))
        return pk_fail(err, PK_ERR_IO, "no such program (or not executable)");

    run_engine e = { .opts = opts, .stats = &result->stats };
    e.log = opts->log ? opts->log : stderr;
    e.sets = opts->sets ? opts->sets : PK_SET_PG;
    if (opts->profile)
        e.profile = *opts->profile;
    else
        pk_run_profile_default(&e.profile);
    if (!pk_decoder_init(&e.decoder64, 64, false) || !pk_decoder_init(&e.decoder32, 32, false))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot set up the decoder");

    fflush(NULL);
    uint64_t start = now_ns();
    e.tsc_start = __rdtsc();
    pid_t pid = fork();
    if (pid < 0)
        return pk_fail(err, PK_ERR_INTERNAL, "fork: %s", strerror(errno));
    if (pid == 0)
        become_program(path, argv, !opts->no_patch);

    int status;
    if (waitpid(pid, &status, WSTOPPED) != pid || !WIFSTOPPED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return pk_fail(err, PK_ERR_INTERNAL, "the program's process did not start");
    }
    long options = PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK |
                   PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP |
                   PTRACE_O_TRACESYSGOOD;
    run_process *p = run_process_new(pid);
    if (!p || !add_process(&e, p) || !add_thread(&e, pid, p)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)options) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SEIZE): %s", strerror(errno));
    }
    e.threads[0]->seen = true;
    kill(pid, SIGCONT);

    int main_status = PK_STATUS_MONITOR_ERROR;
    bool killing = false;
    for (;;) {
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left */
        }
        e.stats->stops++;
        if (killing) {
            if (WIFSTOPPED(status))
                ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        handle_stop(&e, tid, status, pid, &main_status);
        if (e.ended) {
            /* Everything traced dies with the run. */
            killing = true;
            for (size_t i = 0; i < e.nprocs; i++)
                kill(e.procs[i]->pid, SIGKILL);
            for (size_t i = 0; i < e.nthreads; i++)
                kill(e.threads[i]->tid, SIGKILL);
        }
    }
    result->stats.total_ns = now_ns() - start;
    result->status = main_status;
    if (e.ended) {
        result->monitor_ended = true;
        result->status = e.end_status;
        snprintf(result->report, sizeof result->report, "%s", e.end_report);
    }
    while (e.nthreads)
        drop_thread(&e, e.threads[e.nthreads - 1]);
    while (e.nprocs)
        drop_process(&e, e.procs[e.nprocs - 1]);
    free(e.threads);
    free(e.procs);
    run_cache_free(e.cache);
    return PK_OK;
}

/* ---- stats --------------------------------------------------------------------------- */

void pk_run_print_stats(FILE *out, const pk_run_result *result)
{
    const pk_run_stats *s = &result->stats;
    fprintf(out, "popek: %.3f s; %llu stops, %llu system calls seen, %llu made by the monitor, "
            "%llu signals passed on\n", (double)s->total_ns / 1e9, (unsigned long long)s->stops,
            (unsigned long long)s->syscalls, (unsigned long long)s->injected,
            (unsigned long long)s->signals);
    fprintf(out, "popek: %llu threads in %llu processes; %llu mappings scanned (%llu from the "
            "cache); %llu sites patched, %llu by jump\n", (unsigned long long)s->threads,
            (unsigned long long)s->processes, (unsigned long long)s->mappings_scanned,
            (unsigned long long)s->scan_cache_hits, (unsigned long long)s->sites_patched,
            (unsigned long long)s->sites_jumped);
    fprintf(out, "popek: written code pages: %llu write faults, %llu scans before a run\n",
            (unsigned long long)s->write_faults, (unsigned long long)s->exec_faults);
    for (int c = 0; c < PK_CLASS_COUNT; c++)
        if (s->emulated[c] || s->native[c])
            fprintf(out, "popek:   %-14s %10llu emulated %10llu run natively\n",
                    pk_class_get((pk_class_id)c)->key, (unsigned long long)s->emulated[c],
                    (unsigned long long)s->native[c]);
}
