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
 * So the monitor follows what the program sets: every handler
 * (rt_sigaction, and SA_RESETHAND at delivery), and each thread's mask
 * (rt_sigprocmask and sigreturn, read back with PTRACE_GETSIGMASK when
 * they return; and the handler's mask added at each delivery). After
 * consuming a forced signal it puts back what the kernel changed: the
 * handler with an injected rt_sigaction, the mask with PTRACE_SETSIGMASK.
 * A signal neither blocked nor ignored (the usual case) costs nothing.
 *
 * The filter stops rt_sigaction and rt_sigprocmask only when they change
 * something (their second argument is not NULL), and every sigreturn. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include "internal/run.h"

/* The kernel's flags, the same on both ABIs. */
enum { RUN_SA_NODEFER = 0x40000000, RUN_SA_RESETHAND = 0x80000000u };
enum { RUN_SIG_DFL = 0, RUN_SIG_IGN = 1 };

/* Where the monitor puts a struct sigaction it passes to rt_sigaction, in
 * its page in the program (the system-call stub is at its start). */
enum { SCRATCH = 64 };

static uint64_t bit(int sig)
{
    return 1ull << (sig - 1);
}

void run_sig_read_mask(run_thread *t)
{
    uint64_t mask;
    t->sigmask_known = ptrace(PTRACE_GETSIGMASK, t->tid, sizeof mask, &mask) == 0;
    if (t->sigmask_known)
        t->sigmask = mask;
}

void run_sig_exec(run_process *p)
{
    char path[64], line[128];
    unsigned long long ignored = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "SigIgn: %llx", &ignored) == 1)
            break;
    if (f)
        fclose(f);
    memset(p->sigactions, 0, sizeof p->sigactions);
    for (int sig = 1; sig <= RUN_SIGNALS; sig++)
        if (ignored & bit(sig))
            p->sigactions[sig - 1].handler = RUN_SIG_IGN;
}

/* Reads the struct sigaction at addr in p's ABI (old: the i386 sigaction
 * of old, whose mask is one word and comes second). */
static bool read_sigaction(run_process *p, uint64_t addr, bool old, run_sigaction *a)
{
    if (p->bits == 64) {
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

void run_sig_syscall_exit(run_thread *t, long ret)
{
    run_process *p = t->proc;
    int sig = (int)t->sc_args[0];
    switch (t->sc_nr) {
    case RUN_SC_SIGACTION:
    case RUN_SC_OLD_SIGACTION:
        if (ret == 0 && sig >= 1 && sig <= RUN_SIGNALS && t->sc_args[1]) {
            run_sigaction a;
            if (read_sigaction(p, t->sc_args[1], t->sc_nr == RUN_SC_OLD_SIGACTION, &a))
                p->sigactions[sig - 1] = a;
        }
        break;
    case RUN_SC_SIGPROCMASK:
    case RUN_SC_SIGRETURN:
        run_sig_read_mask(t);
        break;
    }
}

void run_sig_delivered(run_thread *t, int sig)
{
    if (!run_sig_handled(t->proc, sig))
        return;
    run_sigaction *a = &t->proc->sigactions[sig - 1];
    run_sig_read_mask(t);
    t->sigmask |= a->mask | (a->flags & RUN_SA_NODEFER ? 0 : bit(sig));
    t->sigmask &= ~(bit(SIGKILL) | bit(SIGSTOP));
    if (a->flags & RUN_SA_RESETHAND)
        *a = (run_sigaction){ 0 };
}

bool run_sig_handled(const run_process *p, int sig)
{
    return sig >= 1 && sig <= RUN_SIGNALS && p->sigactions[sig - 1].handler != RUN_SIG_DFL &&
           p->sigactions[sig - 1].handler != RUN_SIG_IGN;
}

bool run_sig_quiet(const run_thread *t, int sig)
{
    return t->proc->sigactions[sig - 1].handler != RUN_SIG_IGN &&
           !(t->sigmask_known && (t->sigmask & bit(sig)));
}

pk_status run_sig_mend(run_engine *e, run_thread *t, int sig, pk_error *err)
{
    if (run_sig_quiet(t, sig))
        return PK_OK;
    run_process *p = t->proc;
    const run_sigaction *a = &p->sigactions[sig - 1];
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
