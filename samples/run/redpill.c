/* samples/run/redpill.c — the "red pill": a program that asks the CPU
 * whether it runs in a virtual machine, with the instructions that give
 * away where the system tables are without trapping. Built twice, as
 * redpill (64-bit) and redpill32 (-m32).
 *
 * It prints SIDT, SGDT, SLDT, STR and SMSW (to memory, and to a register
 * where the instruction has that form), then a verdict from the IDT base.
 *
 * The rule (Joanna Rutkowska, 2004): her pill ran SIDT into a 6-byte
 * buffer m and said "virtual machine" when m[5] > 0xd0. m[5] is the top
 * byte of a 32-bit base: host kernels of the time kept their IDT lower
 * (Linux 0xc0..., Windows 0x80...), while VMware's monitor moved the
 * guest's IDT to 0xff.... In 64-bit mode every kernel address starts with
 * 0xff, so the top byte says nothing; the same m[5] of the 10-byte image
 * is still bits 31:24 of the base, and that is what this program tests in
 * both modes: bits 31:24 of the IDT base > 0xd0 means "virtual machine".
 *
 * On a CPU with UMIP, Linux answers SIDT with a dummy base (0xffff0000 in
 * 32-bit code, 0xffffffffffff0000 in 64-bit code), so the pill says
 * "virtual machine" there too. A monitor that shows programs Linux's values
 * must give the same answer; one that leaks its own tables gives itself
 * away. */
#include <stdint.h>

#include "sample.h"

/* Linux's UMIP dummies (arch/x86/kernel/umip.c), cut to the mode's width. */
#define UMIP_IDT_BASE ((uintptr_t)0xffffffffffff0000ull)
#define UMIP_GDT_BASE ((uintptr_t)0xfffffffffffe0000ull)

#define PILL_BYTE_MAX 0xd0

/* The memory forms write 16 bits. The register forms start from 0: the
 * CPU zero-extends SLDT, STR and (in 64-bit mode) SMSW into a 32- or
 * 64-bit register, but Linux's UMIP emulation writes only the operand's
 * bytes (4 for `sldt %eax`, which is also what gas makes of `sldt %rax`)
 * and leaves the rest. */
#define STORE_M16(insn) ({ uint16_t v_; \
    __asm__ volatile(insn " %0" : "=m"(v_)); v_; })
#define STORE_REG(insn) ({ uintptr_t v_ = 0; \
    __asm__ volatile(insn " %0" : "+r"(v_)); v_; })

int main(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: %s (no arguments)\n", argv[0]);
        return 2;
    }

    table_reg idt = sidt(), gdt = sgdt();
    uint16_t ldt_m = STORE_M16("sldt"), tr_m = STORE_M16("str");
    uint16_t msw_m = STORE_M16("smsw");
    uintptr_t ldt_r = STORE_REG("sldt"), tr_r = STORE_REG("str");
    uintptr_t msw_r = STORE_REG("smsw");

    printf("redpill: %d-bit\n", (int)sizeof(uintptr_t) * 8);
    printf("sidt: limit=0x%04x base=0x%0*llx\n", idt.limit, BASE_DIGITS,
           (unsigned long long)idt.base);
    printf("sgdt: limit=0x%04x base=0x%0*llx\n", gdt.limit, BASE_DIGITS,
           (unsigned long long)gdt.base);
    printf("sldt: m16=0x%04x reg=0x%04llx\n", ldt_m, (unsigned long long)ldt_r);
    printf("str: m16=0x%04x reg=0x%04llx\n", tr_m, (unsigned long long)tr_r);
    printf("smsw: m16=0x%04x reg=0x%08llx\n", msw_m, (unsigned long long)msw_r);

    int dummies = idt.base == UMIP_IDT_BASE && gdt.base == UMIP_GDT_BASE &&
                  idt.limit == 0 && gdt.limit == 0;
    printf("sidt and sgdt are Linux's UMIP dummies: %s\n", dummies ? "yes" : "no");

    unsigned pill = (unsigned)(idt.base >> 24) & 0xff;
    printf("verdict: %s (idt base bits 31:24 = 0x%02x %s 0x%02x)\n",
           pill > PILL_BYTE_MAX ? "virtual machine" : "no virtual machine",
           pill, pill > PILL_BYTE_MAX ? ">" : "<=", PILL_BYTE_MAX);

    /* Facts that hold with or without UMIP. */
    CHECK(ldt_m == (ldt_r & 0xffff), "sldt memory and register differ");
    CHECK(tr_m == (tr_r & 0xffff), "str memory and register differ");
    CHECK(msw_m == (msw_r & 0xffff), "smsw memory and register differ");
    CHECK(msw_m & 1, "smsw: PE is clear");
    return sample_status();
}
