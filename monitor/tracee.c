/* popek — the guest process: created, sandboxed and driven with ptrace.
 *
 * The guest process starts as a fork of the monitor. Before its first guest
 * instruction it maps guest RAM, waits until the monitor has seized it,
 * installs a seccomp filter that sends every system call to the monitor
 * (SECCOMP_RET_TRACE for all of them, whatever the architecture), and
 * executes INT3. From that stop on the monitor sets its registers: the
 * guest runs in 32-bit compatibility mode (CS 0x23) or 64-bit mode (0x33).
 *
 * The monitor itself needs one system call in the guest: mprotect, to give
 * scanned code pages execute permission. It makes it through a two-byte
 * stub (syscall; int3) that the fork left in the guest process, and lets it
 * pass the seccomp stop because it asked for it; any other system call is
 * the guest's, and the engine refuses it. */
#include "internal/tracee.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Linux's flat user segments on x86-64 (arch/x86/include/asm/segment.h). */
enum { USER32_CS = 0x23, USER_DS = 0x2b, USER_CS = 0x33 };

/* Exit codes of the guest process when setting itself up fails. */
enum { CHILD_MAP_FAILED = 3, CHILD_SYNC_FAILED = 4, CHILD_SECCOMP_FAILED = 5 };

extern const char pk_syscall_stub[];
__asm__(".pushsection .text\n"
        ".globl pk_syscall_stub\n"
        ".type pk_syscall_stub, @function\n"
        "pk_syscall_stub:\n"
        "    syscall\n"
        "    int3\n"
        ".size pk_syscall_stub, . - pk_syscall_stub\n"
        ".popsection\n");

/* The guest the timer interrupts: set only while pk_tracee_run waits for
 * it, so that the monitor's own uses of the stopped guest (an injected
 * mprotect) are not interrupted. An interrupt can still reach a guest that
 * has just stopped on its own; it then shows as an extra stop at the next
 * resume, which every waiter here accepts. One guest per process. */
static volatile sig_atomic_t running_guest;

static void interrupt_guest(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid = running_guest;
    if (pid > 0)
        ptrace(PTRACE_INTERRUPT, pid, 0, 0);
    errno = saved;
}

uint64_t pk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t lowest_mappable_address(void)
{
    unsigned long min = 65536; /* Debian's default when the file says nothing */
    FILE *f = fopen("/proc/sys/vm/mmap_min_addr", "r");
    if (f) {
        if (fscanf(f, "%lu", &min) != 1)
            min = 65536;
        fclose(f);
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    return (min + page - 1) / page * page;
}

/* Runs in the forked guest process: never returns. */
static void become_guest(const pk_tracee *t, int sync_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    void *want = (void *)(uintptr_t)t->ram_low;
    void *got = mmap(want, t->ram_size - t->ram_low, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED_NOREPLACE, t->ram_fd, (off_t)t->ram_low);
    if (got != want)
        _exit(CHILD_MAP_FAILED);
    munmap(t->ram, t->ram_size); /* the monitor's view has no place here */
    char go;
    if (read(sync_fd, &go, 1) != 1)
        _exit(CHILD_SYNC_FAILED);
    close_range(0, ~0u, 0);

    struct sock_filter trace_all = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
    struct sock_fprog prog = { .len = 1, .filter = &trace_all };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        _exit(CHILD_SECCOMP_FAILED);
    for (;;)
        __asm__ volatile("int3"); /* the monitor takes over here */
}

static pk_status wait_stop(pk_tracee *t, int *status, pk_error *err)
{
    for (;;) {
        pid_t r = waitpid(t->pid, status, __WALL);
        if (r == t->pid)
            return PK_OK;
        if (r < 0 && errno != EINTR)
            return pk_fail(err, PK_ERR_INTERNAL, "waiting for the guest: %s", strerror(errno));
    }
}

static const char *child_failure(int status)
{
    if (!WIFEXITED(status))
        return "it was killed";
    switch (WEXITSTATUS(status)) {
    case CHILD_MAP_FAILED: return "its RAM could not be mapped at the guest addresses";
    case CHILD_SYNC_FAILED: return "it lost its monitor";
    case CHILD_SECCOMP_FAILED: return "the seccomp sandbox could not be installed";
    default: return "it exited";
    }
}

pk_status pk_tracee_spawn(pk_tracee *t, uint64_t ram_size, bool long_mode, pk_error *err)
{
    memset(t, 0, sizeof *t);
    t->pid = -1;
    t->ram_fd = -1;
    t->long_mode = long_mode;
    t->ram_size = ram_size;
    t->ram_low = lowest_mappable_address();
    if (ram_size <= t->ram_low)
        return pk_fail(err, PK_ERR_USAGE, "guest memory of %llu bytes ends below 0x%llx, "
                       "the lowest address this host lets a process map",
                       (unsigned long long)ram_size, (unsigned long long)t->ram_low);
    t->ram_fd = memfd_create("popek-guest-ram", MFD_CLOEXEC);
    if (t->ram_fd < 0 || ftruncate(t->ram_fd, (off_t)ram_size) != 0)
        return pk_fail(err, PK_ERR_NOMEM, "guest RAM: %s", strerror(errno));
    t->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->ram_fd, 0);
    if (t->ram == MAP_FAILED) {
        t->ram = NULL;
        return pk_fail(err, PK_ERR_NOMEM, "guest RAM: %s", strerror(errno));
    }

    /* A deadline while the guest runs: a timer signal to this thread,
     * whose handler interrupts the guest, so the wait for its next stop
     * returns. (The handler runs in the tracer thread, where ptrace works.) */
    struct sigaction sa = { .sa_handler = interrupt_guest, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM,
                           ._sigev_un._tid = gettid() };
    if (sigaction(SIGALRM, &sa, &t->old_alarm) != 0 ||
        timer_create(CLOCK_MONOTONIC, &ev, &t->timer) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "timer_create: %s", strerror(errno));
    t->has_timer = true;

    int sync[2];
    if (pipe2(sync, O_CLOEXEC) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "pipe: %s", strerror(errno));
    fflush(NULL);
    t->pid = fork();
    if (t->pid < 0) {
        close(sync[0]);
        close(sync[1]);
        return pk_fail(err, PK_ERR_INTERNAL, "fork: %s", strerror(errno));
    }
    if (t->pid == 0) {
        close(sync[1]);
        become_guest(t, sync[0]);
    }
    close(sync[0]);
    if (ptrace(PTRACE_SEIZE, t->pid, 0, PTRACE_O_EXITKILL | PTRACE_O_TRACESECCOMP) != 0) {
        int seize_errno = errno;
        close(sync[1]);
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SEIZE): %s", strerror(seize_errno));
    }
    ssize_t told = write(sync[1], "g", 1);
    close(sync[1]);
    if (told != 1)
        return pk_fail(err, PK_ERR_INTERNAL, "starting the guest process: %s", strerror(errno));

    int status;
    PK_CHECK(wait_stop(t, &status, err));
    if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP || (status >> 16) != 0) {
        if (!WIFSTOPPED(status))
            t->pid = -1; /* reaped */
        return pk_fail(err, PK_ERR_INTERNAL, "the guest process did not start: %s",
                       WIFSTOPPED(status) ? "it stopped unexpectedly" : child_failure(status));
    }
    return PK_OK;
}

void pk_tracee_destroy(pk_tracee *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        int status;
        while (waitpid(t->pid, &status, __WALL) < 0 && errno == EINTR)
            ;
        t->pid = -1;
    }
    if (t->ram)
        munmap(t->ram, t->ram_size);
    t->ram = NULL;
    if (t->ram_fd >= 0)
        close(t->ram_fd);
    if (t->has_timer) {
        timer_delete(t->timer);
        sigaction(SIGALRM, &t->old_alarm, NULL);
    }
    t->has_timer = false;
    if (t->pinned)
        sched_setaffinity(0, sizeof t->cpus, &t->cpus);
    t->pinned = false;
    running_guest = 0;
    t->ram_fd = -1;
}

static pk_status get_raw(pk_tracee *t, struct user_regs_struct *raw, pk_error *err)
{
    if (ptrace(PTRACE_GETREGS, t->pid, 0, raw) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_GETREGS): %s", strerror(errno));
    return PK_OK;
}

static pk_status set_raw(pk_tracee *t, const struct user_regs_struct *raw, pk_error *err)
{
    if (ptrace(PTRACE_SETREGS, t->pid, 0, raw) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s", strerror(errno));
    return PK_OK;
}

void pk_tracee_pin(pk_tracee *t)
{
    int cpu = sched_getcpu();
    cpu_set_t one;
    if (cpu < 0 || sched_getaffinity(0, sizeof t->cpus, &t->cpus) != 0)
        return;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0) {
        t->pinned = true;
        sched_setaffinity(t->pid, sizeof one, &one);
    }
}

/* Where pk_regs.gpr[i] lives in the kernel's register layout. */
static const size_t gpr_offset[PK_GPR_COUNT] = {
    offsetof(struct user_regs_struct, rax), offsetof(struct user_regs_struct, rcx),
    offsetof(struct user_regs_struct, rdx), offsetof(struct user_regs_struct, rbx),
    offsetof(struct user_regs_struct, rsp), offsetof(struct user_regs_struct, rbp),
    offsetof(struct user_regs_struct, rsi), offsetof(struct user_regs_struct, rdi),
    offsetof(struct user_regs_struct, r8),  offsetof(struct user_regs_struct, r9),
    offsetof(struct user_regs_struct, r10), offsetof(struct user_regs_struct, r11),
    offsetof(struct user_regs_struct, r12), offsetof(struct user_regs_struct, r13),
    offsetof(struct user_regs_struct, r14), offsetof(struct user_regs_struct, r15),
};

static unsigned long long *gpr_slot(struct user_regs_struct *raw, int i)
{
    return (unsigned long long *)((char *)raw + gpr_offset[i]);
}

/* Fills t->raw unless it already holds what the stopped guest has. */
static pk_status read_raw(pk_tracee *t, pk_error *err)
{
    if (!t->raw_valid)
        PK_CHECK(get_raw(t, &t->raw, err));
    t->raw_valid = true;
    return PK_OK;
}

void pk_regs_from_user(const struct user_regs_struct *raw, pk_regs *regs)
{
    for (int i = 0; i < PK_GPR_COUNT; i++)
        regs->gpr[i] = *(const unsigned long long *)((const char *)raw + gpr_offset[i]);
    regs->rip = raw->rip;
    regs->rflags = raw->eflags;
    regs->fs_base = raw->fs_base;
    regs->gs_base = raw->gs_base;
}

void pk_regs_to_user(const pk_regs *regs, struct user_regs_struct *raw)
{
    for (int i = 0; i < PK_GPR_COUNT; i++)
        *gpr_slot(raw, i) = regs->gpr[i];
    raw->rip = regs->rip;
    /* The kernel keeps IF and IOPL itself; only the flags a process may
     * change are taken from here. */
    raw->eflags = regs->rflags;
    raw->fs_base = regs->fs_base;
    raw->gs_base = regs->gs_base;
}

pk_status pk_tracee_get_regs(pk_tracee *t, pk_regs *regs, pk_error *err)
{
    PK_CHECK(read_raw(t, err));
    pk_regs_from_user(&t->raw, regs);
    return PK_OK;
}

pk_status pk_tracee_set_regs(pk_tracee *t, const pk_regs *regs, pk_error *err)
{
    /* The rest of the registers (orig_rax, the segment bases) as the last
     * read found them. */
    PK_CHECK(read_raw(t, err));
    struct user_regs_struct raw = t->raw;
    pk_regs_to_user(regs, &raw);
    raw.cs = t->long_mode ? USER_CS : USER32_CS;
    raw.ss = raw.ds = raw.es = USER_DS;
    raw.fs = raw.gs = 0;
    t->raw = raw;
    return set_raw(t, &raw, err);
}

static void stop_from_status(pk_tracee *t, int status, pk_stop *stop)
{
    memset(stop, 0, sizeof *stop);
    if (!WIFSTOPPED(status)) {
        stop->kind = PK_STOP_EXITED;
        stop->status = status;
        t->pid = -1;
        return;
    }
    int event = status >> 16;
    stop->signal = WSTOPSIG(status);
    /* The registers these stops need are read into the cache, where the
     * engine's pk_tracee_get_regs then finds them. */
    bool have_regs = (event == PTRACE_EVENT_SECCOMP || event == PTRACE_EVENT_STOP) &&
                     get_raw(t, &t->raw, NULL) == PK_OK;
    t->raw_valid = have_regs;
    if (event == PTRACE_EVENT_SECCOMP) {
        stop->kind = PK_STOP_SYSCALL;
        stop->syscall_nr = have_regs ? (long)t->raw.orig_rax : -1;
        return;
    }
    if (event == PTRACE_EVENT_STOP) {
        /* The interrupt can win the race with a fault of the same moment:
         * the kernel reports this stop before it delivers the fault's
         * signal, which is then still queued, with RIP at the faulting
         * instruction. */
        struct __ptrace_peeksiginfo_args one = { .off = 0, .flags = 0, .nr = 1 };
        siginfo_t si;
        stop->kind = PK_STOP_INTERRUPTED;
        stop->signal_pending = ptrace(PTRACE_PEEKSIGINFO, t->pid, &one, &si) > 0;
        stop->rip = have_regs ? t->raw.rip : 0;
        return;
    }
    stop->kind = PK_STOP_SIGNAL;
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si) == 0) {
        stop->code = si.si_code;
        stop->fault_addr = (uint64_t)(uintptr_t)si.si_addr;
    }
}

/* Arms the timer for deadline_ns (0: none), when it is not armed for it. */
static pk_status arm(pk_tracee *t, uint64_t deadline_ns, pk_error *err)
{
    if (deadline_ns == t->armed_ns)
        return PK_OK;
    struct itimerspec at = { .it_value = { (time_t)(deadline_ns / 1000000000u),
                                           (long)(deadline_ns % 1000000000u) } };
    if (timer_settime(t->timer, TIMER_ABSTIME, &at, NULL) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "timer_settime: %s", strerror(errno));
    t->armed_ns = deadline_ns;
    return PK_OK;
}

pk_status pk_tracee_run(pk_tracee *t, bool single_step, uint64_t deadline_ns,
                        pk_stop *stop, pk_error *err)
{
    PK_CHECK(arm(t, deadline_ns, err));
    t->raw_valid = false;
    running_guest = t->pid;
    if (ptrace(single_step ? PTRACE_SINGLESTEP : PTRACE_CONT, t->pid, 0, 0) != 0) {
        running_guest = 0;
        return pk_fail(err, PK_ERR_INTERNAL, "resuming the guest: %s", strerror(errno));
    }
    int status;
    pk_status s = wait_stop(t, &status, err);
    running_guest = 0;
    PK_CHECK(s);
    /* A timer that fired is spent; one still ahead stays armed. */
    if (t->armed_ns && pk_now_ns() >= t->armed_ns)
        t->armed_ns = 0;
    stop_from_status(t, status, stop);
    return PK_OK;
}

pk_status pk_tracee_skip_syscall(pk_tracee *t, pk_error *err)
{
    struct user_regs_struct raw;
    PK_CHECK(get_raw(t, &raw, err));
    raw.orig_rax = (unsigned long long)-1; /* x86: no system call, rAX = -ENOSYS */
    t->raw_valid = false; /* the kernel sets rAX when the guest resumes */
    return set_raw(t, &raw, err);
}

pk_status pk_tracee_protect(pk_tracee *t, uint64_t addr, uint64_t len, int prot, pk_error *err)
{
    struct user_regs_struct saved, call;
    PK_CHECK(get_raw(t, &saved, err));
    call = saved;
    call.cs = USER_CS;
    call.ss = USER_DS;
    call.rip = (uintptr_t)pk_syscall_stub;
    call.rax = SYS_mprotect;
    call.rdi = addr;
    call.rsi = len;
    call.rdx = (unsigned long long)prot;
    call.eflags &= ~(unsigned long long)PK_FLAG_TF;
    call.orig_rax = (unsigned long long)-1;
    PK_CHECK(set_raw(t, &call, err));

    /* The seccomp stop for our own call, then the INT3 after it. A stop
     * for an interrupt that reached the guest as it stopped comes first,
     * and is passed over. */
    int status;
    for (int step = 0; step < 2;) {
        if (ptrace(PTRACE_CONT, t->pid, 0, 0) != 0)
            return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_CONT): %s", strerror(errno));
        PK_CHECK(wait_stop(t, &status, err));
        if (!WIFSTOPPED(status)) {
            t->pid = -1;
            return pk_fail(err, PK_ERR_INTERNAL, "the guest process died during mprotect");
        }
        int event = status >> 16;
        if (event == PTRACE_EVENT_STOP)
            continue;
        bool expected = step == 0 ? event == PTRACE_EVENT_SECCOMP
                                  : event == 0 && WSTOPSIG(status) == SIGTRAP;
        if (!expected)
            return pk_fail(err, PK_ERR_INTERNAL, "unexpected stop 0x%x during mprotect", status);
        step++;
    }
    PK_CHECK(get_raw(t, &call, err));
    t->injected_syscalls++;
    t->raw_valid = false;
    long result = (long)call.rax;
    PK_CHECK(set_raw(t, &saved, err));
    if (result != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "mprotect(0x%llx, %llu) in the guest: %s",
                       (unsigned long long)addr, (unsigned long long)len, strerror((int)-result));
    return PK_OK;
}
