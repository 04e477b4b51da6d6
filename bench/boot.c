/* popek — bench/boot: what one emulated instruction costs under `popek boot`.
 *
 * Usage: boot POPEK PROBE32.ELF GUEST32.ELF
 *
 * Measures, in one run:
 *   - a bare ptrace stop round trip (INT3, waitpid, PTRACE_CONT) with the
 *     tracer and the tracee on one CPU and on two, and the same with a
 *     PTRACE_GETREGS + PTRACE_SETREGS pair in each stop;
 *   - SMSW run in this process, which on a CPU with UMIP is the Linux
 *     kernel's own emulation (a #GP, decoded and emulated in the kernel);
 *   - SMSW patched with INT3 and CLI+STI trapping with #GP, each emulated
 *     by the monitor: the probe guest (PROBE32.ELF, whose Multiboot command
 *     line says which instruction and how many times) run with N and with
 *     0 iterations, the difference divided by N;
 *   - the whole run of guest32 under `popek boot` against
 *     qemu-system-i386 (TCG), best of a few runs each;
 *   - a kernel's critical section (PUSHF, CLI, a store, POPF: the probe's
 *     irqsave loop) under `popek boot --patch-privileged`, from a copy
 *     patched with --fast-path, against the same guest under
 *     qemu-system-i386 (TCG), whole runs; and, for scale, the same loop
 *     through the monitor's stops (the probe patched live with INT3).
 * Every figure is printed with its ratio to the baseline named beside it. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "popek/popek.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(pid, sizeof set, &set);
}

/* Microseconds per ptrace stop round trip: the tracee loops on INT3. */
static double ptrace_round_trip(int tracer_cpu, int tracee_cpu, bool regs, int n)
{
    pin(0, tracer_cpu);
    pid_t pid = fork();
    if (pid == 0) {
        pin(0, tracee_cpu);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        for (;;)
            __asm__ volatile("int3");
    }
    int status;
    waitpid(pid, &status, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
    double t0 = 0;
    for (int i = -100; i < n; i++) { /* the first hundred warm up */
        if (i == 0)
            t0 = now();
        ptrace(PTRACE_CONT, pid, 0, 0);
        waitpid(pid, &status, 0);
        if (regs) {
            struct user_regs_struct r;
            ptrace(PTRACE_GETREGS, pid, 0, &r);
            ptrace(PTRACE_SETREGS, pid, 0, &r);
        }
    }
    double us = (now() - t0) * 1e6 / n;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pin(0, tracer_cpu); /* restore below */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    sched_setaffinity(0, sizeof all, &all);
    return us;
}

/* Microseconds per SMSW run natively in this process. */
static double native_smsw(int n)
{
    double t0 = now();
    for (int i = 0; i < n; i++) {
        unsigned long v;
        __asm__ volatile("smsw %0" : "=r"(v));
    }
    return (now() - t0) * 1e6 / n;
}

static bool cpu_has_umip(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool umip = false;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5)) {
            umip = strstr(line, " umip") != NULL;
            break;
        }
    if (f)
        fclose(f);
    return umip;
}

/* Seconds the probe guest runs with this command line, best of three. */
static double probe_guest(const char *path, const char *cmdline)
{
    double best = 1e9;
    for (int run = 0; run < 3; run++) {
        FILE *sink = fopen("/dev/null", "w");
        pk_boot_options o = { .cmdline = cmdline, .uart = sink };
        pk_boot_result r;
        pk_error err;
        if (pk_boot(path, &o, &r, &err) != PK_OK || r.end != PK_GUEST_EXIT || r.status != 0) {
            fprintf(stderr, "bench/boot: %s %s: %s\n", path, cmdline,
                    err.msg[0] ? err.msg : r.report);
            exit(1);
        }
        fclose(sink);
        if (r.stats.total_ns / 1e9 < best)
            best = r.stats.total_ns / 1e9;
    }
    return best;
}

/* Microseconds per emulated instruction of the probe guest's kind. */
static double emulated(const char *path, const char *kind, int n)
{
    char with[64], without[64];
    snprintf(with, sizeof with, "%s %d", kind, n);
    snprintf(without, sizeof without, "%s 0", kind);
    return (probe_guest(path, with) - probe_guest(path, without)) * 1e6 / n;
}

/* Seconds a command takes, best of three; its output goes nowhere. */
static double run_command(char *const argv[], int expect_status)
{
    double best = 1e9;
    for (int run = 0; run < 3; run++) {
        double t0 = now();
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execvp(argv[0], argv);
            _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        double t = now() - t0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != expect_status) {
            fprintf(stderr, "bench/boot: %s exited with 0x%x\n", argv[0], status);
            exit(1);
        }
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s POPEK PROBE32.ELF GUEST32.ELF\n", argv[0]);
        return 2;
    }
    enum { STOPS = 20000, LOOPS = 20000, NATIVE = 200000 };
    double same = ptrace_round_trip(0, 0, false, STOPS);
    double apart = ptrace_round_trip(0, 1, false, STOPS);
    double same_regs = ptrace_round_trip(0, 0, true, STOPS);
    double smsw_here = native_smsw(NATIVE);
    double smsw = emulated(argv[2], "smsw", LOOPS);
    double clisti = emulated(argv[2], "clisti", LOOPS) / 2;

    printf("ptrace stop round trip, one CPU:         %7.2f us\n", same);
    printf("ptrace stop round trip, two CPUs:        %7.2f us\n", apart);
    printf("  with GETREGS+SETREGS, one CPU:         %7.2f us\n", same_regs);
    printf("SMSW in this process (%s):  %7.2f us\n",
           cpu_has_umip() ? "Linux's UMIP emulation" : "native, no UMIP here  ", smsw_here);
    printf("SMSW patched, emulated by popek:         %7.2f us  (%.2fx a round trip, %.1fx "
           "Linux's emulation)\n", smsw, smsw / same, smsw / smsw_here);
    printf("CLI/STI trapped (#GP), emulated by popek: %6.2f us  (%.2fx a round trip)\n", clisti,
           clisti / same);

    char *popek[] = { argv[1], "boot", argv[3], NULL };
    char *qemu[] = { "qemu-system-i386", "-kernel", argv[3], "-m", "64", "-display", "none",
                     "-serial", "stdio", "-monitor", "none", "-no-reboot", "-accel", "tcg",
                     "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", NULL };
    double t_popek = run_command(popek, 0);
    double t_qemu = run_command(qemu, 1); /* isa-debug-exit: (0 << 1) | 1 */
    printf("guest32 under popek boot:                %7.3f s\n", t_popek);
    printf("guest32 under qemu-system-i386 (TCG):    %7.3f s  (popek takes %.2fx qemu's time)\n",
           t_qemu, t_popek / t_qemu);

    enum { SECTIONS = 20000000, SECTIONS_STOPPING = 20000 };
    char fast[] = "/tmp/popek-bench-probe32-XXXXXX";
    int fd = mkstemp(fast);
    if (fd < 0) {
        perror("bench/boot: mkstemp");
        return 1;
    }
    close(fd);
    char *patch[] = { argv[1], "patch", "--fast-path", "--set", "pg,privileged", argv[2], "-o",
                      fast, NULL };
    run_command(patch, 0);
    char sections[64], stopping[64];
    snprintf(sections, sizeof sections, "irqsave %d", SECTIONS);
    snprintf(stopping, sizeof stopping, "irqsave %d", SECTIONS_STOPPING);
    char *popek_fast[] = { argv[1], "boot", "--patch-privileged", "--cmdline", sections, fast,
                           NULL };
    char *popek_int3[] = { argv[1], "boot", "--patch-privileged", "--cmdline", stopping, argv[2],
                           NULL };
    char *qemu_sections[] = { "qemu-system-i386", "-kernel", argv[2], "-append", sections,
                              "-m", "64", "-display", "none", "-serial", "stdio", "-monitor",
                              "none", "-no-reboot", "-accel", "tcg", "-device",
                              "isa-debug-exit,iobase=0xf4,iosize=0x04", NULL };
    double t_fast = run_command(popek_fast, 0);
    double t_int3 = run_command(popek_int3, 0);
    double t_qemu_sections = run_command(qemu_sections, 1);
    unlink(fast);
    printf("%d critical sections (pushf; cli; add; popf):\n", SECTIONS);
    printf("  popek boot --patch-privileged, fast path: %7.3f s  (%.1f ns each)\n", t_fast,
           t_fast * 1e9 / SECTIONS);
    printf("  qemu-system-i386 (TCG):                   %7.3f s  (%.1f ns each; popek %.2fx "
           "faster)\n", t_qemu_sections, t_qemu_sections * 1e9 / SECTIONS,
           t_qemu_sections / t_fast);
    printf("  popek boot --patch-privileged, INT3 stops: %6.3f s for %d  (%.0f ns each, %.0fx "
           "the fast path)\n", t_int3, SECTIONS_STOPPING, t_int3 * 1e9 / SECTIONS_STOPPING,
           (t_int3 / SECTIONS_STOPPING) / (t_fast / SECTIONS));
    return 0;
}
