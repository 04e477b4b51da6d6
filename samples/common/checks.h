/* samples/common/checks.h — the families of checks whose instructions,
 * values and names read the same in the 32-bit and the 64-bit guest (a
 * name that spells a register, like sldt_r32 or int3_eip_after, takes
 * this mode's: REG_BITS, REG_PREFIX in x86.h). Each guest's kmain calls
 * them in its own order, between its own checks of what differs.
 *
 * checks.c is compiled into each guest with that guest's directory on the
 * include path: its `layout.h` gives the selectors (SEL_KDATA, SEL_TSS,
 * ...) these checks load and ask about. */
#ifndef SAMPLES_CHECKS_H
#define SAMPLES_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiboot.h"

/* ---- Boot and system registers ---------------------------------------- */

void check_boot_info(const struct multiboot_info *mbi, uintptr_t initial_flags);
void check_descriptor_registers(void);
void check_cr0_ts(uintptr_t cr0);
void check_debug_registers(void);
void check_sysenter_msrs(void);
void check_cache_instructions(const void *page);

/* ---- Flags and interrupts ----------------------------------------------- */

void check_flags(void);
void check_interrupts(void);

/* ---- Segment registers --------------------------------------------------- */

void check_selector_reads(void);
void check_selector_loads(void);

/* A far pointer m16:32: offset, then selector (LDS/LES/LFS/LGS/LSS with a
 * 32-bit register, far JMP/CALL through memory in 32-bit code). */
struct __attribute__((packed)) far_pointer32 {
    uint32_t offset;
    uint16_t selector;
};
extern struct far_pointer32 far_ptr32;      /* used by name in asm */

/* LDS/LES/LFS/LGS r32, m16:32 load a segment register and a general
 * register at once: `INSN_sel` and `INSN_off`; then SREG gets SEL_KDATA
 * back. A macro, because the instruction and the register are asm text. */
#define CHECK_FAR_LOAD(insn, sreg, offset_, selector_) do {                 \
        uint32_t off_;                                                      \
        uintptr_t sel_;                                                     \
        far_ptr32 = (struct far_pointer32){ (offset_), (selector_) };       \
        __asm__ volatile(#insn " %2, %0\n\t"                                \
                         "mov %%" #sreg ", %1\n\t"                          \
                         "mov %3, %%" #sreg                                 \
                         : "=&r"(off_), "=&r"(sel_)                         \
                         : "m"(far_ptr32), "r"((uint32_t)SEL_KDATA)         \
                         : "memory");                                       \
        check_hex(#insn "_sel", sel_);                                      \
        check_hex(#insn "_off", off_);                                      \
    } while (0)

void check_lss(void);

/* Written by far_target (helpers.S): the CS and the return address a far
 * call pushed, and the CS the callee ran with. */
extern uintptr_t far_pushed_cs, far_pushed_ip, far_callee_cs;

/* ---- LAR, LSL, VERR, VERW ------------------------------------------------ */

/* One selector to ask about, and the name its lines take. */
struct probe {
    const char *name;
    uint16_t sel;
};
void check_descriptor_queries(const struct probe *probes, size_t n);

/* ---- Exceptions ---------------------------------------------------------- */

void check_int3(void);
void check_fault_sites(void);
void check_operand_faults(void);

/* ---- Port I/O ------------------------------------------------------------ */

void check_port_io(void);

#endif
