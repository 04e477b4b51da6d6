#define _GNU_SOURCE
/* A SIGALRM every 200 us interrupts a loop of PUSHF and POPF that runs
 * while RCX is not 0; at its 300th tick the handler clears RCX in the
 * interrupted context, and the loop must stop. Every tick that lands in
 * the loop, the handler checks that the registers are the loop's; and it
 * counts ticks whose PC is in no file's code (in a trampoline). Under popek run
 * --fast-path the sites are blocks in trampolines, which borrow registers
 * and the stack: a signal that comes while a thread is inside one waits
 * until it is out, so that its handler sees, and may change, the
 * program's own state. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#define RAX 0x1111111111111111ull
#define RDX 0x3333333333333333ull
#define RBX 0x4444444444444444ull

/* spin(): the loop, with RAX, RDX and RBX at known values; each pair of
 * neighbours after PUSHF and POPF makes room for a jump. */
void spin(void);
extern char spin_loop[], spin_loop_end[];
__asm__(".text\n"
        ".globl spin\n"
        ".type spin, @function\n"
        "spin:\n"
        "    push %rbx\n"
        "    mov $0x1111111111111111, %rax\n"
        "    mov $1, %rcx\n"
        "    mov $0x3333333333333333, %rdx\n"
        "    mov $0x4444444444444444, %rbx\n"
        "spin_loop:\n"
        "1:  pushf\n"
        "    mov %rax, %rsi\n"
        "    mov %rdx, %rsi\n"
        "    popf\n"
        "    mov %rdx, %rsi\n"
        "    mov %rbx, %rsi\n"
        "    test %rcx, %rcx\n"
        "    jnz 1b\n"
        "spin_loop_end:\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size spin, . - spin\n");

static volatile int ticks, odd, outside;

/* The executable mappings of files, read before the timer starts. */
static struct { uintptr_t lo, hi; } code[64];
static int ncode;

static void read_code(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && ncode < 64 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8], path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) >= 3 &&
            perms[2] == 'x' && path[0] == '/') {
            code[ncode].lo = lo;
            code[ncode++].hi = hi;
        }
    }
    if (f)
        fclose(f);
}

static int in_code(uintptr_t pc)
{
    for (int i = 0; i < ncode; i++)
        if (pc >= code[i].lo && pc < code[i].hi)
            return 1;
    return 0;
}

static void on_alarm(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    char *pc = (char *)g[REG_RIP];
    ticks++;
    if (!in_code((uintptr_t)pc))
        outside++;
    if (pc >= spin_loop && pc < spin_loop_end &&
        ((uint64_t)g[REG_RAX] != RAX || (uint64_t)g[REG_RDX] != RDX ||
         (uint64_t)g[REG_RBX] != RBX))
        odd++;
    if (ticks == 300)
        g[REG_RCX] = 0;
    if (ticks == 3000) {
        static const char m[] = "the handler's rcx = 0 was lost: the loop did not stop\n";
        write(1, m, sizeof m - 1);
        _exit(1);
    }
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    read_code();
    struct itimerval every = { { 0, 200 }, { 0, 200 } }, off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &every, NULL);
    spin();
    setitimer(ITIMER_REAL, &off, NULL);
    printf("the loop stopped; ticks seeing registers not the loop's: %s, outside the code: %s\n",
           odd ? "some" : "none", outside ? "some" : "none");
    return 0;
}
