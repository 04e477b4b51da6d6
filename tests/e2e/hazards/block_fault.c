#define _GNU_SOURCE
/* A patched SGDT whose store faults, and a PUSHF whose push faults: the
 * SIGSEGV handler must see each at its own address with the registers and
 * stack as they were before it, as natively (where Linux's UMIP emulation
 * of SGDT fails to store and raises SIGSEGV there). Under popek run the
 * site is emulated and its fault raised at the site; with --fast-path its
 * trampoline's block does the store with a register and the stack
 * borrowed, and the monitor puts them back and emulates the site instead.
 * The handler checks, then skips the instruction. And a PUSHF and an SMSW
 * with little stack below them, which natively do not fault: a block's
 * own pushes, further down, do, and must not show. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

/* sgdt_at(p): SGDT to p with known values in the registers a block may
 * borrow; pushf_on(sp): PUSHF with RSP at sp. Each site has a neighbour
 * after it, so that a jump fits, and a label after that the handler
 * resumes at. */
void sgdt_at(void *p);
void pushf_on(void *sp);
void smsw_on(void *sp);
extern char sgdt_site[], sgdt_after[], pushf_site[], pushf_after[];
uint64_t saved_rsp;
__asm__(".text\n"
        ".globl sgdt_at\n"
        ".type sgdt_at, @function\n"
        "sgdt_at:\n"
        "    push %rbx\n"
        "    mov $0x1111, %rax\n"
        "    mov $0x2222, %rcx\n"
        "    mov $0x3333, %rdx\n"
        "    mov $0x4444, %rbx\n"
        "    mov %rsp, saved_rsp(%rip)\n"
        ".globl sgdt_site\n"
        "sgdt_site:\n"
        "    sgdt (%rdi)\n"
        "    nop\n"
        "    nop\n"
        ".globl sgdt_after\n"
        "sgdt_after:\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size sgdt_at, . - sgdt_at\n"
        ".globl pushf_on\n"
        ".type pushf_on, @function\n"
        "pushf_on:\n"
        "    push %rbx\n"
        "    mov %rsp, %rbx\n"
        "    mov %rdi, %rsp\n"
        "    mov $0x1111, %rax\n"
        "    mov $0x2222, %rcx\n"
        "    mov %rsp, saved_rsp(%rip)\n"
        ".globl pushf_site\n"
        "pushf_site:\n"
        "    pushf\n"
        "    mov %rax, %rdx\n"
        "    mov %rcx, %rsi\n"
        ".globl pushf_after\n"
        "pushf_after:\n"
        "    mov %rbx, %rsp\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size pushf_on, . - pushf_on\n"
        ".globl smsw_on\n"
        ".type smsw_on, @function\n"
        "smsw_on:\n"
        "    push %rbx\n"
        "    mov %rsp, %rbx\n"
        "    mov %rdi, %rsp\n"
        "    smsw %eax\n"
        "    mov %rax, %rdx\n"
        "    mov %rcx, %rsi\n"
        "    mov %rbx, %rsp\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size smsw_on, . - smsw_on\n");

static volatile int at_site, regs_kept, stack_kept, faults;
static char *resume_at, *site;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    faults++;
    at_site = (char *)g[REG_RIP] == site;
    regs_kept = g[REG_RAX] == 0x1111 && g[REG_RCX] == 0x2222 &&
                (site == pushf_site || (g[REG_RDX] == 0x3333 && g[REG_RBX] == 0x4444));
    stack_kept = (uint64_t)g[REG_RSP] == saved_rsp;
    g[REG_RIP] = (greg_t)resume_at;
}

static void show(const char *what)
{
    printf("%s: fault at the site %s, registers as they were %s, stack as it was %s\n", what,
           at_site ? "yes" : "no", regs_kept ? "yes" : "no", stack_kept ? "yes" : "no");
    at_site = regs_kept = stack_kept = 0;
}

int main(void)
{
    static char altstack[65536];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);

    site = sgdt_site;
    resume_at = sgdt_after;
    sgdt_at((void *)16);
    show("sgdt to an unmapped page");

    /* a stack whose page below is not there: the PUSHF's own push faults */
    char *area = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(area, 4096);
    site = pushf_site;
    resume_at = pushf_after;
    pushf_on(area + 4096);
    show("pushf onto an unmapped page");

    faults = 0;
    pushf_on(area + 4096 + 8);
    smsw_on(area + 4096);
    printf("pushf with 8 bytes of stack, smsw with none: %d faults\n", faults);
    return 0;
}
