/* popek — the program's signal state, kept as the program set it.
 *
 * The monitor takes over INT3s, single steps and faults of its own making,
 * and Linux delivers each of them by force (force_sig): when the signal is
 * blocked or ignored at that moment, the kernel first unblocks it and
 * resets its handler to SIG_DFL, before the monitor sees the stop. A
 * program that ignores SIGTRAP, blocks SIGSEGV while its JIT runs, or runs
 * a patched site inside its own SIGTRAP handler (where SIGTRAP is blocked)
 * would lose its setting at the first site, and die at its next SIGTRAP.
 *
 * So the monitor follows what the program sets: every handler (each
 * sigaction, read when the call is made, as the kernel reads it; SA_RESETHAND
 * at delivery), shared between processes as the kernel shares it
 * (CLONE_SIGHAND); and each thread's mask (rt_sigprocmask worked out when
 * it is called, the old calls and sigreturn read back when they return,
 * and the handler's mask added at each delivery). After consuming a forced
 * signal it puts back what the kernel changed: the handler with an
 * injected rt_sigaction, the mask with PTRACE_SETSIGMASK. A signal neither
 * blocked nor ignored (the usual case) costs nothing.
 *
 * The filter stops rt_sigaction and rt_sigprocmask only when they change
 * something (their second argument is not NULL), and every sigreturn. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include "internal/run.h"

/* The kernel's flags, the same on both ABIs. */
enum { RUN_SA_NODEFER = 0x40000000, RUN_SA_RESETHAND = 0x80000000u };
enum { RUN_SIG_DFL = 0, RUN_SIG_IGN = 1 };

/* Where the monitor puts what it passes to a call it makes (a struct
 * sigaction, a siginfo), in its page in the program (the system-call stub
 * is at its start). */
enum { SCRATCH = 64 };

/* The handlers of one or more processes (CLONE_SIGHAND shares them). */
struct run_sighand {
    run_sigaction act[RUN_SIGNALS]; /* by signal number - 1 */
    unsigned refs;
};

static uint64_t bit(int sig)
{
    return 1ull << (sig - 1);
}

static const uint64_t unblockable = 1ull << (SIGKILL - 1) | 1ull << (SIGSTOP - 1);

/* ---- handler tables ---------------------------------------------------------------- */

run_sighand *run_sighand_new(const run_sighand *from)
{
    run_sighand *h = from ? malloc(sizeof *h) : calloc(1, sizeof *h);
    if (h) {
        if (from)
            *h = *from;
        h->refs = 1;
    }
    return h;
}

run_sighand *run_sighand_share(run_sighand *h)
{
    h->refs++;
    return h;
}

void run_sighand_drop(run_sighand *h)
{
    if (h && --h->refs == 0)
        free(h);
}

static run_sigaction *action(const run_process *p, int sig)
{
    return &p->sighand->act[sig - 1];
}

/* ---- what /proc and ptrace show ------------------------------------------------------ */

void run_sig_read_mask(run_thread *t)
{
    uint64_t mask;
    t->sigmask_known = ptrace(PTRACE_GETSIGMASK, t->tid, sizeof mask, &mask) == 0;
    if (t->sigmask_known)
        t->sigmask = mask;
}

bool run_sig_caught_now(pid_t tid, int sig)
{
    run_status s;
    return run_read_status(tid, &s) && (s.caught & bit(sig));
}

pk_status run_sig_exec(run_process *p)
{
    /* exec gives a process handlers of its own, all default but those
     * ignored, which stay ignored. */
    run_sighand *h = run_sighand_new(NULL);
    if (!h)
        return PK_ERR_NOMEM;
    run_status s = { .ignored = 0 };
    run_read_status(p->pid, &s);
    for (int sig = 1; sig <= RUN_SIGNALS; sig++)
        if (s.ignored & bit(sig))
            h->act[sig - 1].handler = RUN_SIG_IGN;
    run_sighand_drop(p->sighand);
    p->sighand = h;
    return PK_OK;
}

/* ---- the calls ------------------------------------------------------------------------ */

/* Reads the struct sigaction at addr: of the i386 ABI when compat (old:
 * the i386 sigaction of old, whose mask is one word and comes second). */
static bool read_sigaction(run_process *p, uint64_t addr, bool compat, bool old,
                           run_sigaction *a)
{
    if (!compat) {
        uint64_t k[4]; /* handler, flags, restorer, mask */
        if (!run_peek(p, addr, k, sizeof k))
            return false;
        *a = (run_sigaction){ k[0], k[1], k[2], k[3] };
        return true;
    }
    uint32_t k[5];
    if (old) {
        if (!run_peek(p, addr, k, 4 * sizeof *k)) /* handler, mask, flags, restorer */
            return false;
        *a = (run_sigaction){ k[0], k[2], k[3], k[1] };
        return true;
    }
    if (!run_peek(p, addr, k, sizeof k)) /* handler, flags, restorer, mask (two words) */
        return false;
    *a = (run_sigaction){ k[0], k[1], k[2], k[3] | (uint64_t)k[4] << 32 };
    return true;
}

static bool write_sigaction(run_process *p, uint64_t addr, const run_sigaction *a)
{
    if (p->bits == 64) {
        uint64_t k[4] = { a->handler, a->flags, a->restorer, a->mask };
        return run_poke(p, addr, k, sizeof k);
    }
    uint32_t k[5] = { (uint32_t)a->handler, (uint32_t)a->flags, (uint32_t)a->restorer,
                      (uint32_t)a->mask, (uint32_t)(a->mask >> 32) };
    return run_poke(p, addr, k, sizeof k);
}

/* A signal whose handler the program may set. */
static bool settable(int sig)
{
    return sig >= 1 && sig <= RUN_SIGNALS && sig != SIGKILL && sig != SIGSTOP;
}

bool run_sig_syscall_entry(run_thread *t)
{
    run_process *p = t->proc;
    const uint64_t *a = t->sc_args;
    int sig = (int)a[0];
    run_sigaction act;
    uint64_t set;
    switch (t->sc_nr) {
    case RUN_SC_SIGACTION:
    case RUN_SC_OLD_SIGACTION:
        /* Read now, as the kernel reads it (the old action may be written
         * over it). With a valid signal and size the kernel sets it, even
         * when writing the old action back then fails. */
        if (settable(sig) && a[1] && (t->sc_nr == RUN_SC_OLD_SIGACTION || a[3] == 8) &&
            read_sigaction(p, a[1], t->sc_compat, t->sc_nr == RUN_SC_OLD_SIGACTION, &act)) {
            act.mask &= ~unblockable;
            *action(p, sig) = act;
        }
        return false;
    case RUN_SC_SIGNAL: /* i386 signal(): one-shot, no mask */
        if (settable(sig))
            *action(p, sig) = (run_sigaction){ a[1], RUN_SA_RESETHAND | RUN_SA_NODEFER, 0, 0 };
        return false;
    case RUN_SC_SIGPROCMASK:
        /* Worked out here, as the kernel will: the mask is set before the
         * old one is written back. */
        if (a[3] != 8 || !run_peek(p, a[1], &set, sizeof set))
            return false;
        run_sig_read_mask(t);
        if (a[0] == SIG_BLOCK)
            t->sigmask |= set;
        else if (a[0] == SIG_UNBLOCK)
            t->sigmask &= ~set;
        else if (a[0] == SIG_SETMASK)
            t->sigmask = set;
        t->sigmask &= ~unblockable;
        return false;
    case RUN_SC_OLD_SIGPROCMASK:
    case RUN_SC_SIGRETURN:
        return true; /* read when it returns */
    }
    return false;
}

void run_sig_syscall_exit(run_thread *t)
{
    run_sig_read_mask(t);
}

/* ---- deliveries ----------------------------------------------------------------------- */

void run_sig_delivered(run_thread *t, int sig)
{
    if (!run_sig_handled(t->proc, sig))
        return;
    run_sigaction *a = action(t->proc, sig);
    /* The mask in force: a temporary one while sigsuspend, ppoll or
     * pselect waits (PTRACE_GETSIGMASK shows the one saved then). */
    run_status s;
    if (run_read_status(t->tid, &s)) {
        t->sigmask = s.blocked;
        t->sigmask_known = true;
    } else {
        run_sig_read_mask(t);
    }
    t->sigmask |= a->mask | (a->flags & RUN_SA_NODEFER ? 0 : bit(sig));
    t->sigmask &= ~unblockable;
    if (a->flags & RUN_SA_RESETHAND)
        *a = (run_sigaction){ 0 };
}

bool run_sig_handled(const run_process *p, int sig)
{
    return sig >= 1 && sig <= RUN_SIGNALS && action(p, sig)->handler != RUN_SIG_DFL &&
           action(p, sig)->handler != RUN_SIG_IGN;
}

bool run_sig_blocked(const run_thread *t, int sig)
{
    return t->sigmask_known && (t->sigmask & bit(sig));
}

bool run_sig_forced(const run_thread *t, int sig)
{
    run_status s;
    if (run_sig_quiet(t, sig) || !run_read_status(t->tid, &s))
        return false; /* (neither blocked nor ignored: nothing a force changes) */
    return (run_sig_blocked(t, sig) && !(s.blocked & bit(sig))) ||
           (action(t->proc, sig)->handler == RUN_SIG_IGN && !(s.ignored & bit(sig)));
}

bool run_sig_quiet(const run_thread *t, int sig)
{
    return action(t->proc, sig)->handler != RUN_SIG_IGN && !run_sig_blocked(t, sig);
}

pk_status run_sig_mend(run_engine *e, run_thread *t, int sig, pk_error *err)
{
    if (run_sig_quiet(t, sig))
        return PK_OK;
    run_process *p = t->proc;
    const run_sigaction *a = action(p, sig);
    if (a->handler != RUN_SIG_DFL) {
        uint64_t scratch = p->stub + SCRATCH;
        if (!p->stub || !write_sigaction(p, scratch, a))
            return pk_fail(err, PK_ERR_INTERNAL, "cannot write in the monitor's page in "
                           "process %d", (int)p->pid);
        long nr = p->bits == 32 ? I386_RT_SIGACTION : SYS_rt_sigaction;
        uint64_t args[6] = { (uint64_t)sig, scratch, 0, 8 };
        long ret;
        PK_CHECK(run_inject(e, t, nr, args, &ret, err));
        if (ret != 0)
            return pk_fail(err, PK_ERR_INTERNAL, "rt_sigaction(%d) in process %d: %s", sig,
                           (int)p->pid, strerror((int)-ret));
    }
    if (t->sigmask_known && ptrace(PTRACE_SETSIGMASK, t->tid, sizeof t->sigmask,
                                   &t->sigmask) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETSIGMASK, %d): %s", (int)t->tid,
                       strerror(errno));
    return PK_OK;
}

pk_status run_sig_requeue(run_engine *e, run_thread *t, const siginfo_t *si, pk_error *err)
{
    run_process *p = t->proc;
    uint8_t info[128];
    memset(info, 0, sizeof info);
    if (p->bits == 64) {
        memcpy(info, si, sizeof info);
    } else {
        /* The i386 layout: the union at 12, the sender's pid and uid, then
         * a sigqueue value. */
        int32_t head[6] = { si->si_signo, si->si_errno, si->si_code, si->si_pid,
                            (int32_t)si->si_uid, si->si_value.sival_int };
        memcpy(info, head, sizeof head);
    }
    uint64_t scratch = p->stub + SCRATCH;
    if (!p->stub || !run_poke(p, scratch, info, sizeof info))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot write in the monitor's page in process %d",
                       (int)p->pid);
    long nr = p->bits == 32 ? I386_RT_TGSIGQUEUEINFO : SYS_rt_tgsigqueueinfo;
    uint64_t args[6] = { (uint64_t)p->pid, (uint64_t)t->tid, (uint64_t)si->si_signo, scratch };
    long ret;
    PK_CHECK(run_inject(e, t, nr, args, &ret, err));
    if (ret != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "rt_tgsigqueueinfo(%d) in process %d: %s",
                       si->si_signo, (int)p->pid, strerror((int)-ret));
    return PK_OK;
}
