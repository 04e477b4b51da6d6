/* samples/probe32 — a Multiboot guest that does one thing, named on its
 * command line: for bench/boot, the loop of one sensitive instruction, and
 * for the tests, each way a guest can end.
 *
 *   smsw N     SMSW N times (patched with INT3 under popek boot), exit 0
 *   clisti N   CLI and STI N times each (both fault at ring 3), exit 0
 *   irqsave N  a kernel's critical section N times: PUSHF, CLI, a store,
 *              POPF (local_irq_save and local_irq_restore), exit 0
 *   exit N     write N to the exit port
 *   ud2        an invalid opcode with no IDT: a triple fault
 *   halt       HLT with interrupts off: nothing can wake it
 *   spin       loop forever (for --timeout)
 *   rdpmc      an instruction the monitor does not emulate
 *   selfmod    rewrite an instruction on the page the rewriting code runs
 *              from, then run it: exit with what it returns (7)
 *   resite     rewrite a patched SMSW into another SMSW (its INT3 byte
 *              stays), then run it: exit with CR0's low byte (0x11 = 17)
 *
 * Anything else exits with status 1. */
#include <stdint.h>

#include "../common/multiboot.h"
#include "../common/x86.h"

/* The Multiboot header, a stack and _start, which calls
 * guest_main(info). */
MULTIBOOT_SMALL_GUEST(guest_main);

static int starts_with(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static uint32_t number_after_space(const char *s)
{
    while (*s && *s != ' ')
        s++;
    uint32_t n = 0;
    while (*s == ' ')
        s++;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (uint32_t)(*s++ - '0');
    return n;
}

/* selfmod() writes 7 over the immediate of the `mov $1, %eax` right after
 * it, then runs it: the store and the instruction it changes lie within
 * one 32-byte block, so on one page. */
uint32_t selfmod(void);
__asm__(".pushsection .text\n"
        ".balign 32\n"
        "selfmod:\n"
        "    movb $7, 1f + 1\n"
        "1:  movl $1, %eax\n"
        "    ret\n"
        ".popsection\n");

/* resite(): SMSW into ECX, which starts out 0; returns ECX. The site is
 * patched (INT3 over its 0F); resite's caller turns `smsw %eax` (0F 01 E0)
 * into `smsw %ecx` (0F 01 E1) by its last byte, so the first byte, INT3 in
 * memory, does not change: the monitor must emulate the new instruction,
 * not the one it patched. */
uint32_t resite(void);
extern uint8_t resite_smsw[];
__asm__(".pushsection .text\n"
        "resite:\n"
        "    xor %ecx, %ecx\n"
        "resite_smsw:\n"
        "    smsw %eax\n"
        "    mov %ecx, %eax\n"
        "    ret\n"
        ".popsection\n");

/* irqsave(n): n critical sections, each bracketed as a kernel brackets
 * them, with a counter bumped inside and outside. Laid out so that each
 * pair of neighbours fills a jump of its own (pushf+cli+add, popf+add):
 * the loop's only branch target is its first instruction. */
void irqsave(uint32_t n);
__asm__(".pushsection .text\n"
        "irqsave:\n"
        "    mov 4(%esp), %ecx\n"
        "    test %ecx, %ecx\n"
        "    jz 2f\n"
        "1:  pushf\n"
        "    cli\n"
        "    addl $1, irqsave_inside\n"
        "    popf\n"
        "    addl $1, irqsave_outside\n"
        "    dec %ecx\n"
        "    jnz 1b\n"
        "2:  ret\n"
        ".popsection\n");
volatile uint32_t irqsave_inside, irqsave_outside;

void guest_main(const struct multiboot_info *mbi);

void guest_main(const struct multiboot_info *mbi)
{
    const char *cmdline = (mbi->flags & MB_INFO_CMDLINE) ? (const char *)(uintptr_t)mbi->cmdline : "";
    /* qemu -kernel puts the file's path first */
    for (const char *c = cmdline; *c && *c != ' '; c++)
        if (*c == '/') {
            cmdline = c;
            while (*cmdline && *cmdline++ != ' ')
                ;
            break;
        }
    uint32_t n = number_after_space(cmdline);
    if (starts_with(cmdline, "smsw")) {
        for (uint32_t i = 0; i < n; i++) {
            uint16_t msw;
            __asm__ volatile("smsw %0" : "=r"(msw));
        }
    } else if (starts_with(cmdline, "clisti")) {
        for (uint32_t i = 0; i < n; i++)
            __asm__ volatile("cli; sti");
    } else if (starts_with(cmdline, "irqsave")) {
        irqsave(n);
        if (irqsave_inside != n || irqsave_outside != n)
            outb(0xF4, 1);
    } else if (starts_with(cmdline, "exit")) {
        outb(0xF4, (uint8_t)n);
    } else if (starts_with(cmdline, "ud2")) {
        __asm__ volatile("ud2");
    } else if (starts_with(cmdline, "halt")) {
        __asm__ volatile("cli; hlt");
    } else if (starts_with(cmdline, "spin")) {
        for (;;)
            __asm__ volatile("" ::: "memory");
    } else if (starts_with(cmdline, "selfmod")) {
        outb(0xF4, (uint8_t)selfmod());
    } else if (starts_with(cmdline, "resite")) {
        ((volatile uint8_t *)resite_smsw)[2] = 0xE1;
        outb(0xF4, (uint8_t)resite());
    } else if (starts_with(cmdline, "rdpmc")) {
        __asm__ volatile("rdpmc" : : "c"(0) : "eax", "edx");
    } else {
        outb(0xF4, 1);
    }
    outb(0xF4, 0);
}
