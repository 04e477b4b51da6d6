/* samples/run/ldt.c — selectors, as LAR, LSL, VERR and VERW see them from
 * CPL 3. The program installs its own LDT with modify_ldt(2) and checks
 * its entries, then the GDT selectors Linux gives every process, and reads
 * SLDT before and after, and CS, SS, DS and ES with MOV.
 *
 * None of these instructions traps at CPL 3 and all of them read the real
 * descriptor tables, so a monitor that runs a guest kernel's segments with
 * other descriptors must patch them; for an ordinary program it must give
 * back what the host tables say (SDM Vol. 2A LAR, LSL; 2B VERR/VERW).
 *
 * What is printed:
 *   - ZF of each instruction, and LAR's and LSL's result only when ZF = 1
 *     (on failure the destination is left unchanged);
 *   - LAR's access rights masked with 0x00f0ff00: bits 19:16 are undefined
 *     in the SDM;
 *   - for 0x7b, the segment whose limit holds the CPU and node number
 *     (GDT_ENTRY_CPUNODE), only LSL's ZF.
 *
 * modify_ldt has no DPL field: Linux makes every LDT entry DPL 3, present
 * or not, with its accessed bit set. A DPL 0 descriptor can only be shown
 * with the kernel's own GDT entries (0x10, the TSS 0x40, the LDT 0x50). */
#include <asm/ldt.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sample.h"

#define AR_DEFINED  0x00f0ff00u     /* LAR's defined bits */
#define SEL_LDT     0x4             /* TI: the selector indexes the LDT */
#define RPL3        0x3
#define LDT_SEL(n)  ((uint16_t)((n) << 3 | SEL_LDT | RPL3))

/* ---- The instructions ------------------------------------------------- */

static int lar(uint16_t sel, uint32_t *ar)
{
    uint8_t zf;
    __asm__ volatile("lar %w[sel], %[ar]\n\tsetz %[zf]"
                     : [ar] "+r"(*ar), [zf] "=q"(zf) : [sel] "r"(sel) : "cc");
    return zf;
}

static int lsl(uint16_t sel, uint32_t *limit)
{
    uint8_t zf;
    __asm__ volatile("lsl %w[sel], %[lim]\n\tsetz %[zf]"
                     : [lim] "+r"(*limit), [zf] "=q"(zf) : [sel] "r"(sel) : "cc");
    return zf;
}

static int verr(uint16_t sel)
{
    uint8_t zf;
    __asm__ volatile("verr %w[sel]\n\tsetz %[zf]" : [zf] "=q"(zf) : [sel] "r"(sel) : "cc");
    return zf;
}

static int verw(uint16_t sel)
{
    uint8_t zf;
    __asm__ volatile("verw %w[sel]\n\tsetz %[zf]" : [zf] "=q"(zf) : [sel] "r"(sel) : "cc");
    return zf;
}

/* SLDT to memory (16 bits) and to a register. gas encodes `sldt %rax` as
 * `sldt %eax` (the CPU zero-extends either way), and Linux's UMIP
 * emulation writes only the low 4 bytes of a 32-bit register: zeroed
 * first, the register reads the same under both. */
static uint16_t sldt_m16(void)
{
    uint16_t v;
    __asm__ volatile("sldt %0" : "=m"(v));
    return v;
}

static uint64_t sldt_reg(void)
{
    uint64_t v = 0;
    __asm__ volatile("sldt %k0" : "+r"(v));
    return v;
}

#define READ_SEG(sreg) ({ uint64_t v_; \
    __asm__ volatile("mov %%" #sreg ", %0" : "=r"(v_)); v_; })

/* ---- Printing ---------------------------------------------------------- */

/* One line per selector: each instruction's ZF, and LAR's and LSL's
 * results when ZF = 1. show_limit = 0 hides LSL's value. */
static void probe(uint16_t sel, const char *what, int show_limit)
{
    uint32_t ar = 0, limit = 0;
    int lar_zf = lar(sel, &ar), lsl_zf = lsl(sel, &limit);

    printf("sel 0x%04x %-24s lar zf=%d", sel, what, lar_zf);
    if (lar_zf)
        printf(" ar=0x%08x", ar & AR_DEFINED);
    else
        printf("            ");
    printf("  lsl zf=%d", lsl_zf);
    if (lsl_zf && show_limit)
        printf(" limit=0x%08x", limit);
    else
        printf("                 ");
    printf("  verr zf=%d  verw zf=%d\n", verr(sel), verw(sel));
}

/* LAR's DPL (bits 14:13) of a selector, or -1 when LAR fails. */
static int dpl(uint16_t sel)
{
    uint32_t ar = 0;
    return lar(sel, &ar) ? (int)((ar >> 13) & 3) : -1;
}

static void print_sldt(const char *when)
{
    uint16_t m = sldt_m16();
    uint64_t r = sldt_reg();
    printf("sldt %s: m16=0x%04x reg=0x%04llx\n", when, m, (unsigned long long)r);
    CHECK(m == r, "sldt to memory and to a register differ");
}

/* ---- The LDT ------------------------------------------------------------ */

struct entry {
    const char *what;
    struct user_desc d;
};

/* Entries 0-4; each is given its own selector probe below. */
static const struct entry entries[] = {
    { "data rw 32 limit 0xfff", { .entry_number = 0, .base_addr = 0,
      .limit = 0xfff, .seg_32bit = 1, .contents = MODIFY_LDT_CONTENTS_DATA,
      .read_exec_only = 0, .limit_in_pages = 0, .seg_not_present = 0,
      .useable = 1 } },
    { "code xr 32 4 GiB", { .entry_number = 1, .base_addr = 0,
      .limit = 0xfffff, .seg_32bit = 1, .contents = MODIFY_LDT_CONTENTS_CODE,
      .read_exec_only = 0, .limit_in_pages = 1, .seg_not_present = 0,
      .useable = 0 } },
    { "data rw not present", { .entry_number = 2, .base_addr = 0,
      .limit = 0xfff, .seg_32bit = 1, .contents = MODIFY_LDT_CONTENTS_DATA,
      .read_exec_only = 0, .limit_in_pages = 0, .seg_not_present = 1,
      .useable = 0 } },
    { "data read-only 16", { .entry_number = 3, .base_addr = 0,
      .limit = 0xffff, .seg_32bit = 0, .contents = MODIFY_LDT_CONTENTS_DATA,
      .read_exec_only = 1, .limit_in_pages = 0, .seg_not_present = 0,
      .useable = 0 } },
    { "code execute-only 32", { .entry_number = 4, .base_addr = 0,
      .limit = 0xfffff, .seg_32bit = 1, .contents = MODIFY_LDT_CONTENTS_CODE,
      .read_exec_only = 1, .limit_in_pages = 1, .seg_not_present = 0,
      .useable = 0 } },
};
#define ENTRIES (sizeof entries / sizeof entries[0])

static int install_ldt(void)
{
    for (size_t i = 0; i < ENTRIES; i++) {
        struct user_desc d = entries[i].d;
        /* func 0x11 writes one entry; func 1 is the old mode, which
         * clears the AVL ("useable") bit. */
        if (syscall(SYS_modify_ldt, 0x11, &d, sizeof d) != 0) {
            perror("modify_ldt");
            return -1;
        }
    }
    return 0;
}

int main(void)
{
    printf("cs=0x%04llx ss=0x%04llx ds=0x%04llx es=0x%04llx\n",
           (unsigned long long)READ_SEG(cs), (unsigned long long)READ_SEG(ss),
           (unsigned long long)READ_SEG(ds), (unsigned long long)READ_SEG(es));

    print_sldt("before modify_ldt");
    probe(LDT_SEL(0), "ldt 0, no ldt yet", 1);

    if (install_ldt())
        return 2;
    print_sldt("after modify_ldt");

    for (size_t i = 0; i < ENTRIES; i++)
        probe(LDT_SEL(i), entries[i].what, 1);
    probe(LDT_SEL(0) & ~RPL3, "ldt 0 with rpl 0", 1);
    probe(LDT_SEL(8), "ldt 8, past the limit", 1);
    probe(0, "null", 1);

    int all_dpl3 = 1;
    for (size_t i = 0; i < ENTRIES; i++)
        if (dpl(LDT_SEL(i)) != 3)
            all_dpl3 = 0;
    printf("ldt: every entry DPL 3 (modify_ldt has no DPL field): %s\n",
           all_dpl3 ? "yes" : "no");

    probe(0x33, "gdt user cs 64", 1);
    probe(0x2b, "gdt user ds", 1);
    probe(0x23, "gdt user cs 32", 1);
    probe(0x10, "gdt kernel cs", 1);
    probe(0x40, "gdt tss", 1);
    probe(0x50, "gdt ldt", 1);
    probe(0x7b, "gdt cpu number", 0);

    /* A selector of our own LDT in ES, read back with MOV, then ES = 0
     * again as Linux starts 64-bit processes. */
    uint16_t sel = LDT_SEL(0);
    __asm__ volatile("mov %0, %%es" : : "r"((uint32_t)sel) : "memory");
    uint64_t es = READ_SEG(es);
    __asm__ volatile("mov %0, %%es" : : "r"(0u) : "memory");
    printf("es after loading 0x%04x: 0x%04llx, after loading 0: 0x%04llx\n",
           sel, (unsigned long long)es, (unsigned long long)READ_SEG(es));
    CHECK(es == sel, "es reads 0x%llx", (unsigned long long)es);

    CHECK(all_dpl3, "an LDT entry is not DPL 3");
    CHECK(READ_SEG(cs) == 0x33, "cs is not 0x33");
    return sample_status();
}
