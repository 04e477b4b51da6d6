/* samples/run/signals.c — signals that belong to the program, not to the
 * monitor. The program
 *
 *   1. writes to address 0x10: its SIGSEGV handler records si_code and
 *      si_addr, runs a PUSHF (a patched site, reached inside a handler
 *      with SIGSEGV blocked) and siglongjmps back;
 *   2. runs an INT3 of its own: its SIGTRAP handler records si_code and
 *      where RIP points, as an offset from the INT3;
 *   3. sets TF with PUSHF / OR / POPF and counts the single-step SIGTRAPs
 *      (one per instruction, a PUSHF among them) until its handler clears
 *      TF in the saved context at a known label.
 *
 * A monitor that patches with INT3 and drives the tracee with ptrace sees
 * all of these as its own kind of stop: it must hand each one to the
 * program with the si_code the kernel gave, and an emulated instruction
 * under TF must still end with the single-step trap. Handlers only
 * record; main prints. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "sample.h"

/* int3_site: an INT3 and a RET, so RIP in the handler is int3_site + 1.
 *
 * single_step: sets TF with POPF. The CPU traps after each instruction
 * that follows the POPF (not after the POPF itself), so the traps report
 * RIP at each of the next instructions in turn; at ss_stop the handler
 * clears TF. Returns the image of the PUSHF run under TF. */
void int3_site(void);
uint64_t single_step(void);
extern const char ss_stop[];
__asm__(".pushsection .text\n"
        "int3_site:\n"
        "    int3\n"
        "    ret\n"
        "single_step:\n"
        "    pushfq\n"
        "    orq $0x100, (%rsp)\n"
        "    popfq\n"
        "    nop\n"
        "    pushfq\n"
        "    popq %rax\n"
        "ss_stop:\n"
        "    ret\n"
        ".popsection\n");

#define MAX_TRAPS 16

static sigjmp_buf segv_return;
static volatile int segv_code;
static volatile uintptr_t segv_addr;
static volatile uintptr_t segv_flags;

static volatile int stepping;           /* 0: expecting the INT3 */
static volatile int int3_code;
static volatile intptr_t int3_rip_offset;
static volatile int traps;
static volatile int step_code[MAX_TRAPS];
static volatile intptr_t step_offset[MAX_TRAPS];
static volatile int step_addr_is_rip = 1;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    segv_code = si->si_code;
    segv_addr = (uintptr_t)si->si_addr;
    segv_flags = read_flags();
    siglongjmp(segv_return, 1);
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    ucontext_t *uc = ctx;
    greg_t *regs = uc->uc_mcontext.gregs;
    uintptr_t rip = (uintptr_t)regs[REG_RIP];

    if (!stepping) {
        int3_code = si->si_code;
        int3_rip_offset = (intptr_t)(rip - (uintptr_t)int3_site);
        return;
    }
    if (traps < MAX_TRAPS) {
        step_code[traps] = si->si_code;
        step_offset[traps] = (intptr_t)(rip - (uintptr_t)single_step);
    }
    traps++;
    if ((uintptr_t)si->si_addr != rip)
        step_addr_is_rip = 0;
    /* Stop at ss_stop; give up after MAX_TRAPS so a lost TF cannot hang. */
    if (rip == (uintptr_t)ss_stop || traps >= MAX_TRAPS)
        regs[REG_EFL] &= ~(greg_t)FLAGS_TF;
}

static const char *code_name(int sig, int code)
{
    if (code == SI_KERNEL)
        return "SI_KERNEL";
    if (sig == SIGSEGV && code == SEGV_MAPERR)
        return "SEGV_MAPERR";
    if (sig == SIGSEGV && code == SEGV_ACCERR)
        return "SEGV_ACCERR";
    if (sig == SIGTRAP && code == TRAP_BRKPT)
        return "TRAP_BRKPT";
    if (sig == SIGTRAP && code == TRAP_TRACE)
        return "TRAP_TRACE";
    return "?";
}

static int handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("sigaction");
        return -1;
    }
    return 0;
}

static void segv(void)
{
    if (sigsetjmp(segv_return, 1) == 0) {
        int *volatile p = (int *)0x10;
        *p = 1;
        printf("signals: the write to 0x10 did not fault\n");
        CHECK(0, "no SIGSEGV");
        return;
    }
    printf("signals: sigsegv si_code=%d (%s) si_addr=%#llx\n", segv_code,
           code_name(SIGSEGV, segv_code), (unsigned long long)segv_addr);
    printf("signals: pushf in the sigsegv handler IF=%u IOPL=%u\n",
           flags_if(segv_flags), flags_iopl(segv_flags));
    CHECK(segv_code == SEGV_MAPERR && segv_addr == 0x10, "sigsegv siginfo");
    CHECK(flags_if(segv_flags) == 1 && flags_iopl(segv_flags) == 0,
          "pushf in the handler %#llx", (unsigned long long)segv_flags);
}

static void int3(void)
{
    int3_rip_offset = -1;
    int3_site();
    printf("signals: int3 sigtrap si_code=%d (%s) rip=int3_site%+ld\n",
           int3_code, code_name(SIGTRAP, int3_code), (long)int3_rip_offset);
    CHECK(int3_rip_offset == 1, "RIP not just after the INT3");
}

static void step(void)
{
    stepping = 1;
    uint64_t image = single_step();
    stepping = 0;

    printf("signals: single-step %d traps, at", traps);
    for (int i = 0; i < traps && i < MAX_TRAPS; i++)
        printf(" single_step+%ld", (long)step_offset[i]);
    printf("\n");
    for (int i = 0; i < traps && i < MAX_TRAPS; i++)
        if (step_code[i] != step_code[0])
            CHECK(0, "trap %d si_code %d", i, step_code[i]);
    if (traps > 0)
        printf("signals: single-step si_code=%d (%s), si_addr=rip: %s\n",
               step_code[0], code_name(SIGTRAP, step_code[0]),
               step_addr_is_rip ? "yes" : "no");
    printf("signals: pushf while single-stepping TF=%u\n",
           (image & FLAGS_TF) ? 1 : 0);
    CHECK(traps > 0 && traps < MAX_TRAPS, "single-step never reached ss_stop");
    CHECK(image & FLAGS_TF, "PUSHF under TF shows TF=0");
    CHECK((read_flags() & FLAGS_TF) == 0, "TF still set after the handler");
}

int main(void)
{
    if (handle(SIGSEGV, on_segv) || handle(SIGTRAP, on_trap))
        return 2;
    segv();
    int3();
    step();
    printf("signals: done\n");
    return sample_status();
}
