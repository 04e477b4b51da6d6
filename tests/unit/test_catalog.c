/* popek — catalog tests.
 *
 * Every row is decoded from real bytes, with Zydis as the scanner uses it
 * (ZYDIS_DECODER_MODE_MINIMAL) and with a full decode, in 16-, 32- and 64-bit
 * mode. A vector claims the modes in which its bytes are exactly one
 * instruction of its row; the tests check the claim both ways, and then check
 * that each row's `modes` field is exactly the set of modes its vectors reach.
 * Encodings come from the Intel SDM vol. 2 opcode tables (appendix A) and the
 * AMD APM vol. 3 where the vendors differ.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "popek/catalog.h"

/* ---- modes --------------------------------------------------------------- */

enum {
    M16 = PK_MODE_16,
    M32 = PK_MODE_32,
    M64 = PK_MODE_64,
    LEG = PK_MODES_LEGACY,
    M3264 = PK_MODE_32 | PK_MODE_64,
    ALL = PK_MODES_ALL,
    NEVER = 0, /* the bytes are never this row, in any mode */
};

typedef struct cpu_mode {
    unsigned bit;
    ZydisMachineMode machine;
    ZydisStackWidth width;
    const char *name;
} cpu_mode;

static const cpu_mode cpu_modes[] = {
    { PK_MODE_16, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16, "16-bit" },
    { PK_MODE_32, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32, "32-bit" },
    { PK_MODE_64, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64, "64-bit" },
};
#define N_MODES (sizeof cpu_modes / sizeof cpu_modes[0])

/* ---- vectors ------------------------------------------------------------- */

/* No pointers inside: Criterion hands parameters to the test in another
 * process. */
typedef struct vec {
    pk_class_id row; /* expected row; PK_CLASS_NONE for negative vectors */
    unsigned modes;  /* modes where the bytes are exactly one insn of row */
    uint8_t len;
    uint8_t bytes[15];
    char what[48];
} vec;

#define V(row_, modes_, what_, ...)                                            \
    { PK_CLASS_##row_, (modes_), sizeof((uint8_t[]){ __VA_ARGS__ }),           \
      { __VA_ARGS__ }, what_ }

/* Memory operands use ModRM mod=00 r/m=000 ([bx+si] in 16-bit code, [eax] or
 * [rax] otherwise) so that one byte string has the same length in every mode;
 * forms with a disp32 or RIP-relative operand are 32/64-only for that reason. */
static vec vectors[] = {
    /* -- pg ---------------------------------------------------------------- */
    V(SGDT, ALL, "sgdt [mem]", 0x0F, 0x01, 0x00),
    V(SGDT, ALL, "o16 sgdt [mem]", 0x66, 0x0F, 0x01, 0x00),
    V(SGDT, M64, "rex.w sgdt [rax]", 0x48, 0x0F, 0x01, 0x00),
    V(SGDT, M3264, "sgdt [disp32/rip]", 0x0F, 0x01, 0x05, 0, 0, 0, 0),
    /* SDM vol. 2, SGDT: memory only; mod=11 is another insn (ENCLV here). */
    V(SGDT, NEVER, "0F 01 C0 is not sgdt", 0x0F, 0x01, 0xC0),
    V(SIDT, ALL, "sidt [mem]", 0x0F, 0x01, 0x08),
    V(SIDT, M3264, "sidt [disp32/rip]", 0x0F, 0x01, 0x0D, 0, 0, 0, 0),
    V(SIDT, NEVER, "0F 01 C8 is monitor", 0x0F, 0x01, 0xC8),
    V(SLDT, ALL, "sldt [mem]", 0x0F, 0x00, 0x00),
    V(SLDT, ALL, "sldt ax/eax", 0x0F, 0x00, 0xC0),
    V(SLDT, ALL, "o16 sldt reg", 0x66, 0x0F, 0x00, 0xC0),
    V(SLDT, M64, "sldt rax", 0x48, 0x0F, 0x00, 0xC0),
    V(SMSW, ALL, "smsw [mem]", 0x0F, 0x01, 0x20),
    V(SMSW, ALL, "smsw ax/eax", 0x0F, 0x01, 0xE0),
    V(SMSW, ALL, "o16 smsw reg", 0x66, 0x0F, 0x01, 0xE0),
    V(SMSW, M64, "smsw rax", 0x48, 0x0F, 0x01, 0xE0),
    V(STR, ALL, "str [mem]", 0x0F, 0x00, 0x08),
    V(STR, ALL, "str ax/eax", 0x0F, 0x00, 0xC8),
    V(STR, ALL, "o16 str reg", 0x66, 0x0F, 0x00, 0xC8),
    V(STR, M64, "str rax", 0x48, 0x0F, 0x00, 0xC8),
    V(PUSHF, ALL, "pushf/pushfd/pushfq", 0x9C),
    V(PUSHF, ALL, "o16 pushf (pushfd in 16-bit)", 0x66, 0x9C),
    V(PUSHF, M64, "rex.w pushfq", 0x48, 0x9C),
    V(POPF, ALL, "popf/popfd/popfq", 0x9D),
    V(POPF, ALL, "o16 popf (popfd in 16-bit)", 0x66, 0x9D),
    V(POPF, M64, "rex.w popfq", 0x48, 0x9D),
    V(LAR, ALL, "lar reg, reg", 0x0F, 0x02, 0xC0),
    V(LAR, ALL, "lar reg, [mem]", 0x0F, 0x02, 0x00),
    V(LAR, ALL, "o16 lar", 0x66, 0x0F, 0x02, 0xC0),
    V(LAR, M64, "lar rax, eax", 0x48, 0x0F, 0x02, 0xC0),
    V(LSL, ALL, "lsl reg, reg", 0x0F, 0x03, 0xC0),
    V(LSL, ALL, "lsl reg, [mem]", 0x0F, 0x03, 0x00),
    V(LSL, ALL, "o16 lsl", 0x66, 0x0F, 0x03, 0xC0),
    V(LSL, M64, "lsl rax, eax", 0x48, 0x0F, 0x03, 0xC0),
    V(VERR, ALL, "verr reg", 0x0F, 0x00, 0xE0),
    V(VERR, ALL, "verr [mem]", 0x0F, 0x00, 0x20),
    V(VERW, ALL, "verw reg", 0x0F, 0x00, 0xE8),
    V(VERW, ALL, "verw [mem]", 0x0F, 0x00, 0x28),
    /* Linux's CPU-buffer clearing: verw ds_sel(%rip). */
    V(VERW, M3264, "verw [disp32/rip]", 0x0F, 0x00, 0x2D, 0, 0, 0, 0),
    /* SDM vol. 2, POP: 07/17/1F are invalid in 64-bit mode. */
    V(POP_SREG, LEG, "pop es", 0x07),
    V(POP_SREG, LEG, "pop ss", 0x17),
    V(POP_SREG, LEG, "pop ds", 0x1F),
    V(POP_SREG, LEG, "o16 pop ds", 0x66, 0x1F),
    V(POP_SREG, ALL, "pop fs", 0x0F, 0xA1),
    V(POP_SREG, ALL, "pop gs", 0x0F, 0xA9),
    V(POP_SREG, ALL, "o16 pop fs", 0x66, 0x0F, 0xA1),
    V(PUSH_SREG, LEG, "push es", 0x06),
    V(PUSH_SREG, LEG, "push cs", 0x0E),
    V(PUSH_SREG, LEG, "push ss", 0x16),
    V(PUSH_SREG, LEG, "push ds", 0x1E),
    V(PUSH_SREG, LEG, "o16 push cs", 0x66, 0x0E),
    V(PUSH_SREG, ALL, "push fs", 0x0F, 0xA0),
    V(PUSH_SREG, ALL, "push gs", 0x0F, 0xA8),
    V(PUSH_SREG, ALL, "o16 push gs", 0x66, 0x0F, 0xA8),
    V(MOV_FROM_SREG, ALL, "mov reg, cs", 0x8C, 0xC8),
    V(MOV_FROM_SREG, ALL, "mov reg, ss", 0x8C, 0xD0),
    V(MOV_FROM_SREG, ALL, "mov reg, fs", 0x8C, 0xE0),
    V(MOV_FROM_SREG, ALL, "mov [mem], cs", 0x8C, 0x08),
    V(MOV_FROM_SREG, ALL, "o16 mov reg, ds", 0x66, 0x8C, 0xD8),
    V(MOV_FROM_SREG, M64, "mov rax, cs", 0x48, 0x8C, 0xC8),
    /* SDM vol. 2, MOV: Sreg 6 and 7 are reserved (#UD). */
    V(MOV_FROM_SREG, NEVER, "mov reg, sreg6", 0x8C, 0xF0),
    V(MOV_TO_SREG, ALL, "mov ds, reg", 0x8E, 0xD8),
    V(MOV_TO_SREG, ALL, "mov ss, reg", 0x8E, 0xD0),
    V(MOV_TO_SREG, ALL, "mov es, reg", 0x8E, 0xC0),
    V(MOV_TO_SREG, ALL, "mov gs, reg", 0x8E, 0xE8),
    V(MOV_TO_SREG, ALL, "mov ss, [mem]", 0x8E, 0x10),
    V(MOV_TO_SREG, M64, "rex.w mov ss, rax", 0x48, 0x8E, 0xD0),
    /* SDM vol. 2, MOV: loading CS with MOV is #UD. */
    V(MOV_TO_SREG, NEVER, "mov cs, reg", 0x8E, 0xC8),
    /* SDM vol. 2, LDS/LES: invalid in 64-bit mode, where C4/C5 are VEX. */
    V(LDS_LES, LEG, "lds reg, [mem]", 0xC5, 0x00),
    V(LDS_LES, LEG, "les reg, [mem]", 0xC4, 0x00),
    V(LDS_LES, LEG, "o16 lds", 0x66, 0xC5, 0x00),
    V(LSS_LFS_LGS, ALL, "lss reg, [mem]", 0x0F, 0xB2, 0x00),
    V(LSS_LFS_LGS, ALL, "lfs reg, [mem]", 0x0F, 0xB4, 0x00),
    V(LSS_LFS_LGS, ALL, "lgs reg, [mem]", 0x0F, 0xB5, 0x00),
    V(LSS_LFS_LGS, M64, "lss rax, m16:64", 0x48, 0x0F, 0xB2, 0x00),
    /* SDM vol. 2, CALL: 9A ptr16:16/32 is invalid in 64-bit mode. */
    V(CALL_FAR, M16, "call ptr16:16", 0x9A, 0, 0, 0, 0),
    V(CALL_FAR, M32, "call ptr16:32", 0x9A, 0, 0, 0, 0, 0, 0),
    V(CALL_FAR, M32, "o16 call ptr16:16", 0x66, 0x9A, 0, 0, 0, 0),
    V(CALL_FAR, M16, "o32 call ptr16:32", 0x66, 0x9A, 0, 0, 0, 0, 0, 0),
    V(CALL_FAR, ALL, "call far [mem]", 0xFF, 0x18),
    V(CALL_FAR, ALL, "o16 call far [mem]", 0x66, 0xFF, 0x18),
    V(CALL_FAR, M64, "call m16:64", 0x48, 0xFF, 0x18),
    V(CALL_FAR, M3264, "call far [disp32/rip]", 0xFF, 0x1D, 0, 0, 0, 0),
    V(CALL_FAR, NEVER, "call far reg", 0xFF, 0xD8),
    V(JMP_FAR, M16, "jmp ptr16:16", 0xEA, 0, 0, 0, 0),
    V(JMP_FAR, M32, "jmp ptr16:32", 0xEA, 0, 0, 0, 0, 0, 0),
    V(JMP_FAR, ALL, "jmp far [mem]", 0xFF, 0x28),
    V(JMP_FAR, M64, "jmp m16:64", 0x48, 0xFF, 0x28),
    V(JMP_FAR, NEVER, "jmp far reg", 0xFF, 0xE8),
    V(RET_FAR, ALL, "retf", 0xCB),
    V(RET_FAR, ALL, "retf imm16", 0xCA, 0x08, 0x00),
    V(RET_FAR, ALL, "o16 retf", 0x66, 0xCB),
    V(RET_FAR, M64, "retfq", 0x48, 0xCB),
    V(RET_FAR, M64, "retfq imm16", 0x48, 0xCA, 0x08, 0x00),
    V(IRET, ALL, "iret/iretd", 0xCF),
    V(IRET, ALL, "o16 iret (iretd in 16-bit)", 0x66, 0xCF),
    V(IRET, M64, "iretq", 0x48, 0xCF),
    V(INT80, ALL, "int 0x80", 0xCD, 0x80),
    V(INT_N, ALL, "int 3 (two-byte form)", 0xCD, 0x03),
    V(INT_N, ALL, "int 0x21", 0xCD, 0x21),
    /* SDM vol. 2, INTO: invalid in 64-bit mode. */
    V(INTO, LEG, "into", 0xCE),
    V(INT3, ALL, "int3", 0xCC),
    V(INT1, ALL, "int1/icebp", 0xF1),

    /* -- privileged -------------------------------------------------------- */
    V(CLI, ALL, "cli", 0xFA),
    V(STI, ALL, "sti", 0xFB),
    V(HLT, ALL, "hlt", 0xF4),
    V(IN, ALL, "in al, imm8", 0xE4, 0x60),
    V(IN, ALL, "in ax/eax, imm8", 0xE5, 0x60),
    V(IN, ALL, "in al, dx", 0xEC),
    V(IN, ALL, "in ax/eax, dx", 0xED),
    V(IN, ALL, "o16 in, dx", 0x66, 0xED),
    V(OUT, ALL, "out imm8, al", 0xE6, 0x80),
    V(OUT, ALL, "out imm8, ax/eax", 0xE7, 0x80),
    V(OUT, ALL, "out dx, al", 0xEE),
    V(OUT, ALL, "out dx, ax/eax", 0xEF),
    V(OUT, ALL, "o16 out dx", 0x66, 0xEF),
    V(INS, ALL, "insb", 0x6C),
    V(INS, ALL, "insw/insd", 0x6D),
    V(INS, ALL, "o16 insw/insd", 0x66, 0x6D),
    V(INS, ALL, "rep insb", 0xF3, 0x6C),
    V(INS, ALL, "rep insw/insd", 0xF3, 0x6D),
    V(OUTS, ALL, "outsb", 0x6E),
    V(OUTS, ALL, "outsw/outsd", 0x6F),
    V(OUTS, ALL, "o16 outsw/outsd", 0x66, 0x6F),
    V(OUTS, ALL, "rep outsb", 0xF3, 0x6E),
    V(OUTS, ALL, "rep outsw/outsd", 0xF3, 0x6F),
    V(LGDT, ALL, "lgdt [mem]", 0x0F, 0x01, 0x10),
    V(LGDT, M3264, "lgdt [disp32/rip]", 0x0F, 0x01, 0x15, 0, 0, 0, 0),
    V(LGDT, NEVER, "0F 01 D0 is xgetbv", 0x0F, 0x01, 0xD0),
    V(LIDT, ALL, "lidt [mem]", 0x0F, 0x01, 0x18),
    V(LIDT, NEVER, "0F 01 D8 is vmrun", 0x0F, 0x01, 0xD8),
    V(LLDT, ALL, "lldt [mem]", 0x0F, 0x00, 0x10),
    V(LLDT, ALL, "lldt reg", 0x0F, 0x00, 0xD0),
    V(LTR, ALL, "ltr [mem]", 0x0F, 0x00, 0x18),
    V(LTR, ALL, "ltr reg", 0x0F, 0x00, 0xD8),
    V(LMSW, ALL, "lmsw [mem]", 0x0F, 0x01, 0x30),
    V(LMSW, ALL, "lmsw reg", 0x0F, 0x01, 0xF0),
    V(CLTS, ALL, "clts", 0x0F, 0x06),
    V(MOV_CR, ALL, "mov reg, cr0", 0x0F, 0x20, 0xC0),
    V(MOV_CR, ALL, "mov cr0, reg", 0x0F, 0x22, 0xC0),
    V(MOV_CR, ALL, "mov reg, cr2", 0x0F, 0x20, 0xD0),
    V(MOV_CR, ALL, "mov reg, cr3", 0x0F, 0x20, 0xD8),
    V(MOV_CR, ALL, "mov cr3, reg", 0x0F, 0x22, 0xD8),
    V(MOV_CR, ALL, "mov cr4, reg", 0x0F, 0x22, 0xE0),
    V(MOV_CR, M64, "mov rax, cr8", 0x44, 0x0F, 0x20, 0xC0),
    V(MOV_CR, M64, "mov cr8, rax", 0x44, 0x0F, 0x22, 0xC0),
    /* SDM vol. 2, MOV CR: CR1 is reserved (#UD). */
    V(MOV_CR, NEVER, "mov reg, cr1", 0x0F, 0x20, 0xC8),
    V(MOV_DR, ALL, "mov reg, dr0", 0x0F, 0x21, 0xC0),
    V(MOV_DR, ALL, "mov dr0, reg", 0x0F, 0x23, 0xC0),
    V(MOV_DR, ALL, "mov reg, dr7", 0x0F, 0x21, 0xF8),
    V(MOV_DR, ALL, "mov dr7, reg", 0x0F, 0x23, 0xF8),
    V(RDMSR, ALL, "rdmsr", 0x0F, 0x32),
    V(WRMSR, ALL, "wrmsr", 0x0F, 0x30),
    V(INVLPG, ALL, "invlpg [mem]", 0x0F, 0x01, 0x38),
    V(INVLPG, M3264, "invlpg [disp32/rip]", 0x0F, 0x01, 0x3D, 0, 0, 0, 0),
    V(INVLPG, NEVER, "0F 01 F8 is swapgs", 0x0F, 0x01, 0xF8),
    V(INVD, ALL, "invd", 0x0F, 0x08),
    V(WBINVD, ALL, "wbinvd", 0x0F, 0x09),
    /* WBNOINVD (F3 0F 09) is also privileged; Zydis decodes it as WBINVD
     * unless ZYDIS_DECODER_MODE_WBNOINVD is enabled, which the scanner does
     * not do. */
    V(WBINVD, ALL, "f3 wbinvd (wbnoinvd)", 0xF3, 0x0F, 0x09),
    V(INVPCID, ALL, "invpcid reg, [mem]", 0x66, 0x0F, 0x38, 0x82, 0x00),
    V(XSETBV, ALL, "xsetbv", 0x0F, 0x01, 0xD1),
    /* SDM vol. 2, SWAPGS: #UD outside 64-bit mode. */
    V(SWAPGS, M64, "swapgs", 0x0F, 0x01, 0xF8),
    /* Intel: 64-bit only; AMD APM vol. 3: also legacy and compatibility mode. */
    V(SYSRET, ALL, "sysret", 0x0F, 0x07),
    V(SYSRET, M64, "sysretq", 0x48, 0x0F, 0x07),
    V(SYSEXIT, ALL, "sysexit", 0x0F, 0x35),
    V(SYSEXIT, M64, "sysexitq", 0x48, 0x0F, 0x35),
    V(STAC_CLAC, ALL, "stac", 0x0F, 0x01, 0xCB),
    V(STAC_CLAC, ALL, "clac", 0x0F, 0x01, 0xCA),
    V(MONITOR_MWAIT, ALL, "monitor", 0x0F, 0x01, 0xC8),
    V(MONITOR_MWAIT, ALL, "mwait", 0x0F, 0x01, 0xC9),
    V(XSAVES_XRSTORS, ALL, "xsaves [mem]", 0x0F, 0xC7, 0x28),
    V(XSAVES_XRSTORS, ALL, "xrstors [mem]", 0x0F, 0xC7, 0x18),
    V(XSAVES_XRSTORS, M64, "xsaves64 [rax]", 0x48, 0x0F, 0xC7, 0x28),
    V(XSAVES_XRSTORS, M64, "xrstors64 [rax]", 0x48, 0x0F, 0xC7, 0x18),
    /* SDM vol. 3D, ENCLS: NP 0F 01 CF; with 66 it is SEAMCALL (64-bit only). */
    V(ENCLS, ALL, "encls", 0x0F, 0x01, 0xCF),
    V(ENCLS, NEVER, "66 0F 01 CF is seamcall", 0x66, 0x0F, 0x01, 0xCF),
    /* AMD APM vol. 3: PVALIDATE in every mode, RMPADJUST in 64-bit mode only;
     * F2 0F 01 FE is RMPUPDATE and F3 0F 01 FF is PSMASH (host side). */
    V(SEV_SNP, ALL, "pvalidate", 0xF2, 0x0F, 0x01, 0xFF),
    V(SEV_SNP, ALL, "a32/a16 pvalidate", 0x67, 0xF2, 0x0F, 0x01, 0xFF),
    V(SEV_SNP, M64, "rmpadjust", 0xF3, 0x0F, 0x01, 0xFE),
    V(SEV_SNP, NEVER, "F2 0F 01 FE is rmpupdate", 0xF2, 0x0F, 0x01, 0xFE),
    V(SEV_SNP, NEVER, "F3 0F 01 FF is psmash", 0xF3, 0x0F, 0x01, 0xFF),
    V(SEV_SNP, NEVER, "0F 01 FF is tlbsync", 0x0F, 0x01, 0xFF),
    /* Intel TDX: TDCALL needs the 66 prefix and exists in every mode. */
    V(TDCALL, ALL, "tdcall", 0x66, 0x0F, 0x01, 0xCC),
    V(TDCALL, NEVER, "0F 01 CC without 66", 0x0F, 0x01, 0xCC),
    /* SDM vol. 2, WRUSS: memory operand only; WRUSSQ is 64-bit only. */
    V(WRUSS, ALL, "wrussd [mem], reg", 0x66, 0x0F, 0x38, 0xF5, 0x00),
    V(WRUSS, M3264, "wrussd [disp32/rip], reg", 0x66, 0x0F, 0x38, 0xF5, 0x05, 0, 0, 0, 0),
    V(WRUSS, M64, "wrussq [rax], rax", 0x66, 0x48, 0x0F, 0x38, 0xF5, 0x00),
    V(WRUSS, NEVER, "wruss with a register operand", 0x66, 0x0F, 0x38, 0xF5, 0xC0),

    /* -- extended ---------------------------------------------------------- */
    V(CPUID, ALL, "cpuid", 0x0F, 0xA2),
    V(RDTSC, ALL, "rdtsc", 0x0F, 0x31),
    V(RDTSCP, ALL, "rdtscp", 0x0F, 0x01, 0xF9),
    V(RDPID, ALL, "rdpid reg", 0xF3, 0x0F, 0xC7, 0xF8),
    V(RDPID, M64, "rdpid rax (rex.w)", 0xF3, 0x48, 0x0F, 0xC7, 0xF8),
    /* AMD APM vol. 3, RDPRU. */
    V(RDPRU, ALL, "rdpru", 0x0F, 0x01, 0xFD),
    V(RDPMC, ALL, "rdpmc", 0x0F, 0x33),
    V(SYSCALL, ALL, "syscall", 0x0F, 0x05),
    V(SYSENTER, ALL, "sysenter", 0x0F, 0x34),
    V(XGETBV, ALL, "xgetbv", 0x0F, 0x01, 0xD0),
    /* SDM vol. 2, RDFSBASE etc.: #UD outside 64-bit mode. */
    V(FSGSBASE, M64, "rdfsbase eax", 0xF3, 0x0F, 0xAE, 0xC0),
    V(FSGSBASE, M64, "rdfsbase rax", 0xF3, 0x48, 0x0F, 0xAE, 0xC0),
    V(FSGSBASE, M64, "rdgsbase eax", 0xF3, 0x0F, 0xAE, 0xC8),
    V(FSGSBASE, M64, "wrfsbase eax", 0xF3, 0x0F, 0xAE, 0xD0),
    V(FSGSBASE, M64, "wrgsbase rax", 0xF3, 0x48, 0x0F, 0xAE, 0xD8),

    /* -- not sensitive: must classify as no row ----------------------------- */
    V(NONE, M16, "call rel16", 0xE8, 0x00, 0x00),
    V(NONE, M3264, "call rel32", 0xE8, 0, 0, 0, 0),
    V(NONE, ALL, "call reg", 0xFF, 0xD0),
    V(NONE, ALL, "call [mem]", 0xFF, 0x10),
    V(NONE, M3264, "jmp rel32", 0xE9, 0, 0, 0, 0),
    V(NONE, ALL, "jmp rel8", 0xEB, 0xFE),
    V(NONE, ALL, "jmp reg", 0xFF, 0xE0),
    V(NONE, ALL, "jmp [mem]", 0xFF, 0x20),
    V(NONE, ALL, "ret", 0xC3),
    V(NONE, ALL, "ret imm16", 0xC2, 0x08, 0x00),
    V(NONE, ALL, "mov reg, reg", 0x89, 0xC0),
    V(NONE, ALL, "mov reg, [mem]", 0x8B, 0x00),
    V(NONE, M64, "mov rax, rax", 0x48, 0x89, 0xC0),
    V(NONE, ALL, "push ax/eax/rax", 0x50),
    V(NONE, ALL, "pop ax/eax/rax", 0x58),
    V(NONE, ALL, "push imm8", 0x6A, 0x00),
    V(NONE, ALL, "push [mem]", 0xFF, 0x30),
    V(NONE, ALL, "pop [mem]", 0x8F, 0x00),
    V(NONE, ALL, "lea reg, [mem]", 0x8D, 0x00),
    V(NONE, ALL, "leave", 0xC9),
    V(NONE, ALL, "nop", 0x90),
    V(NONE, ALL, "pause", 0xF3, 0x90),
    V(NONE, ALL, "ud2", 0x0F, 0x0B),
    V(NONE, ALL, "fwait", 0x9B),
    V(NONE, ALL, "vmcall", 0x0F, 0x01, 0xC1),
    V(NONE, ALL, "vmlaunch", 0x0F, 0x01, 0xC2),
    V(NONE, ALL, "vmfunc", 0x0F, 0x01, 0xD4),
    V(NONE, ALL, "xend", 0x0F, 0x01, 0xD5),
    V(NONE, ALL, "xtest", 0x0F, 0x01, 0xD6),
    V(NONE, ALL, "vmmcall", 0x0F, 0x01, 0xD9),
    V(NONE, ALL, "serialize", 0x0F, 0x01, 0xE8),
    V(NONE, ALL, "rdpkru", 0x0F, 0x01, 0xEE),
    V(NONE, ALL, "wrpkru", 0x0F, 0x01, 0xEF),
    V(NONE, ALL, "rdrand", 0x0F, 0xC7, 0xF0),
    V(NONE, ALL, "rdseed (0F C7 /7 without F3)", 0x0F, 0xC7, 0xF8),
    V(NONE, ALL, "xsave [mem]", 0x0F, 0xAE, 0x20),
    V(NONE, ALL, "xrstor [mem]", 0x0F, 0xAE, 0x28),
    V(NONE, ALL, "xsavec [mem]", 0x0F, 0xC7, 0x20),
    /* CET: WRSS writes the current privilege level's shadow stack and is
     * allowed at CPL 3 once the OS enables it; only WRUSS is ring-0 only. */
    V(NONE, ALL, "wrssd [mem], reg", 0x0F, 0x38, 0xF6, 0x00),
    V(NONE, M64, "wrssq [rax], rax", 0x48, 0x0F, 0x38, 0xF6, 0x00),
    /* In 32-bit mode C4/C5 with mod=11 are VEX too (SDM vol. 2, 3.1.1.2). */
    V(NONE, ALL, "vzeroupper (C5 VEX)", 0xC5, 0xF8, 0x77),
    V(NONE, ALL, "vbroadcastss (C4 VEX)", 0xC4, 0xE2, 0x79, 0x18, 0x00),
    V(NONE, ALL, "arpl / movsxd", 0x63, 0xC0),
};
#define N_VECTORS (sizeof vectors / sizeof vectors[0])

/* ---- helpers ------------------------------------------------------------- */

typedef struct outcome {
    bool decoded;
    uint8_t length;
    ZydisMnemonic mnemonic;
    pk_class_id row;
} outcome;

static outcome decode(const vec *v, const cpu_mode *m, bool minimal)
{
    outcome o = { .decoded = false, .row = PK_CLASS_NONE };
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecoderContext ctx;

    cr_assert(ZYAN_SUCCESS(ZydisDecoderInit(&dec, m->machine, m->width)));
    cr_assert(ZYAN_SUCCESS(ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_MINIMAL,
                                                  minimal ? ZYAN_TRUE : ZYAN_FALSE)));
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, &ctx, v->bytes, v->len, &insn)))
        return o;
    o.decoded = true;
    o.length = insn.length;
    o.mnemonic = insn.mnemonic;
    o.row = pk_classify(&insn);
    return o;
}

/* The bytes are exactly one instruction of row in this mode. */
static bool is_whole_row(const outcome *o, const vec *v, pk_class_id row)
{
    return o->decoded && o->length == v->len && o->row == row;
}

static const char *row_key(pk_class_id id)
{
    const pk_class *c = pk_class_get(id);
    return c ? c->key : "(none)";
}

static const char *hex(const vec *v, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < v->len && n < size; i++)
        n += snprintf(buf + n, size - n, "%s%02X", i ? " " : "", v->bytes[i]);
    return buf;
}

/* ---- each vector, in each mode and decoder mode -------------------------- */

ParameterizedTestParameters(catalog, vector)
{
    return cr_make_param_array(vec, vectors, N_VECTORS);
}

ParameterizedTest(vec *v, catalog, vector)
{
    char bytes[64];
    hex(v, bytes, sizeof bytes);
    for (unsigned i = 0; i < N_MODES; i++) {
        const cpu_mode *m = &cpu_modes[i];
        outcome min = decode(v, m, true), full = decode(v, m, false);

        /* The scanner decodes in minimal mode; a full decode must agree. */
        cr_expect(min.decoded == full.decoded && min.length == full.length &&
                      min.row == full.row,
                  "%s (%s), %s: minimal and full decode disagree", v->what, bytes,
                  m->name);

        if (v->modes & m->bit) {
            cr_expect(min.decoded, "%s (%s) does not decode in %s mode", v->what,
                      bytes, m->name);
            cr_expect(!min.decoded || min.length == v->len,
                      "%s (%s), %s: decodes to %u bytes, not %u", v->what, bytes,
                      m->name, min.length, v->len);
            cr_expect(min.row == v->row, "%s (%s), %s: %s classifies as %s, not %s",
                      v->what, bytes, m->name, ZydisMnemonicGetString(min.mnemonic),
                      row_key(min.row), row_key(v->row));
            if (v->row != PK_CLASS_NONE)
                cr_expect(pk_classify_candidate(min.mnemonic),
                          "%s: mnemonic %s is no candidate", v->what,
                          ZydisMnemonicGetString(min.mnemonic));
        } else if (v->row != PK_CLASS_NONE) {
            cr_expect(!is_whole_row(&min, v, v->row),
                      "%s (%s) unexpectedly is %s in %s mode", v->what, bytes,
                      row_key(v->row), m->name);
        }
    }
}

/* ---- rows against vectors ------------------------------------------------ */

/* Each row's `modes` is exactly the set of modes in which some vector really
 * decodes to it, and in a mode the row lacks, none of its vectors decodes to
 * it at any length (they fail, or are another instruction). */
Test(catalog, modes_match_vectors)
{
    char want[16], got[16];
    for (unsigned id = 0; id < PK_CLASS_COUNT; id++) {
        const pk_class *c = pk_class_get((pk_class_id)id);
        unsigned seen = 0, n = 0;
        for (unsigned k = 0; k < N_VECTORS; k++) {
            const vec *v = &vectors[k];
            if (v->row != (pk_class_id)id)
                continue;
            n++;
            for (unsigned i = 0; i < N_MODES; i++) {
                const cpu_mode *m = &cpu_modes[i];
                outcome min = decode(v, m, true), full = decode(v, m, false);
                if (is_whole_row(&min, v, c->id) && is_whole_row(&full, v, c->id))
                    seen |= m->bit;
                if (!(c->modes & m->bit))
                    cr_expect(!(min.decoded && min.row == c->id) &&
                                  !(full.decoded && full.row == c->id),
                              "%s: \"%s\" is %s in %s mode, which the row excludes",
                              c->key, v->what, c->key, m->name);
            }
        }
        cr_expect(n > 0, "row %s has no test vector", c->key);
        cr_expect(seen == c->modes, "row %s: modes field %s, vectors decode in %s",
                  c->key, pk_modes_str(c->modes, want, sizeof want),
                  pk_modes_str(seen, got, sizeof got));
    }
}

/* Every mnemonic a row lists shows up in one of its vectors, so each form
 * (PUSHFQ, IRETQ, INSD, XSAVES64, ...) is exercised. */
Test(catalog, every_mnemonic_has_a_vector)
{
    for (unsigned id = 0; id < PK_CLASS_COUNT; id++) {
        const pk_class *c = pk_class_get((pk_class_id)id);
        for (unsigned j = 0; j < PK_CLASS_MAX_MNEMONICS && c->mnemonics[j]; j++) {
            bool found = false;
            for (unsigned k = 0; k < N_VECTORS && !found; k++) {
                const vec *v = &vectors[k];
                if (v->row != c->id)
                    continue;
                for (unsigned i = 0; i < N_MODES && !found; i++) {
                    outcome o = decode(v, &cpu_modes[i], true);
                    found = is_whole_row(&o, v, c->id) && o.mnemonic == c->mnemonics[j];
                }
            }
            cr_expect(found, "row %s: no vector decodes to %s", c->key,
                      ZydisMnemonicGetString(c->mnemonics[j]));
        }
    }
}

/* ---- rows on their own --------------------------------------------------- */

static bool is_prose_char(const unsigned char *s, size_t *adv)
{
    *adv = 1;
    if (*s >= 0x20 && *s < 0x7F)
        return true;
    /* The en dash (U+2013) is the one non-ASCII character allowed. */
    if (s[0] == 0xE2 && s[1] == 0x80 && s[2] == 0x93) {
        *adv = 3;
        return true;
    }
    return false;
}

static void check_text(const pk_class *c, const char *field, const char *text,
                       bool sentence)
{
    cr_assert_not_null(text, "%s: %s is NULL", c->key, field);
    size_t len = strlen(text);
    cr_expect(len > 0, "%s: %s is empty", c->key, field);
    cr_expect(!strstr(text, "TODO"), "%s: %s still says TODO", c->key, field);
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        size_t adv;
        if (!is_prose_char(p, &adv)) {
            cr_expect(false, "%s: %s has byte 0x%02X at offset %td", c->key, field, *p,
                      (const char *)p - text);
            break;
        }
        p += adv;
    }
    if (len > 0) {
        cr_expect(text[0] != ' ' && text[len - 1] != ' ',
                  "%s: %s has leading or trailing blanks", c->key, field);
        cr_expect(!strstr(text, "  "), "%s: %s has a double space", c->key, field);
        /* Sentences are rendered as paragraphs; the state is a noun phrase. */
        if (sentence)
            cr_expect(text[len - 1] == '.', "%s: %s does not end with a period",
                      c->key, field);
        else
            cr_expect(text[len - 1] != '.', "%s: %s ends with a period", c->key, field);
    }
}

Test(catalog, rows_are_well_formed)
{
    for (unsigned id = 0; id < PK_CLASS_COUNT; id++) {
        const pk_class *c = pk_class_get((pk_class_id)id);
        cr_assert_not_null(c);
        cr_expect_eq(c->id, (pk_class_id)id);

        cr_assert_not_null(c->key);
        cr_expect(c->key[0], "row %u has an empty key", id);
        for (const char *p = c->key; *p; p++)
            cr_expect((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-',
                      "key %s: use lower case, digits and '-'", c->key);
        cr_assert_not_null(c->name);
        cr_expect(c->name[0], "%s: empty display name", c->key);
        for (unsigned j = 0; j < id; j++) {
            const pk_class *o = pk_class_get((pk_class_id)j);
            cr_expect(strcmp(o->key, c->key), "key %s used twice", c->key);
            cr_expect(strcasecmp(o->name, c->name), "name %s used twice", c->name);
        }

        cr_expect(c->set == PK_SET_PG || c->set == PK_SET_PRIVILEGED ||
                      c->set == PK_SET_EXTENDED,
                  "%s: set must be exactly one of pg, privileged, extended", c->key);
        cr_expect(c->modes && !(c->modes & ~(unsigned)PK_MODES_ALL),
                  "%s: bad modes 0x%x", c->key, c->modes);
        cr_expect(!(c->flags & ~(unsigned)PK_CLASS_OPT_IN), "%s: unknown flags", c->key);
        cr_expect((unsigned)c->match < PK_MATCH_COUNT, "%s: bad match", c->key);
        cr_expect((unsigned)c->cpl3 < PK_CPL3_COUNT, "%s: bad cpl3", c->key);
        cr_expect((unsigned)c->pg < PK_PG_COUNT, "%s: bad pg", c->key);

        /* At least one mnemonic, and nothing after the terminator. */
        cr_expect(c->mnemonics[0] != ZYDIS_MNEMONIC_INVALID, "%s: no mnemonic", c->key);
        bool ended = false;
        for (unsigned j = 0; j < PK_CLASS_MAX_MNEMONICS; j++) {
            if (c->mnemonics[j] == ZYDIS_MNEMONIC_INVALID)
                ended = true;
            else
                cr_expect(!ended, "%s: mnemonic after the terminator", c->key);
            cr_expect((unsigned)c->mnemonics[j] <= ZYDIS_MNEMONIC_MAX_VALUE);
            if (!ended)
                cr_expect(pk_classify_candidate(c->mnemonics[j]), "%s: %s no candidate",
                          c->key, ZydisMnemonicGetString(c->mnemonics[j]));
        }

        /* The sets and the Popek-Goldberg reason must tell the same story. */
        cr_expect((c->set == PK_SET_PRIVILEGED) == (c->pg == PK_PG_PRIVILEGED),
                  "%s: privileged set and pg reason disagree", c->key);
        if (c->pg == PK_PG_HOST)
            cr_expect(c->set == PK_SET_EXTENDED, "%s: host-revealing but not extended",
                      c->key);
        if (c->set == PK_SET_PRIVILEGED)
            cr_expect(c->cpl3 == PK_CPL3_FAULTS || c->cpl3 == PK_CPL3_IOPL,
                      "%s: privileged rows must fault at CPL 3", c->key);
        if (c->set == PK_SET_PG)
            cr_expect(c->cpl3 != PK_CPL3_FAULTS && c->cpl3 != PK_CPL3_IOPL,
                      "%s: a pg row that always faults is virtualizable", c->key);
        if (c->flags & PK_CLASS_OPT_IN)
            cr_expect(c->match == PK_MATCH_MNEMONIC, "%s: opt-in rows match by mnemonic",
                      c->key);

        cr_assert_not_null(c->encodings);
        cr_expect(c->encodings[0], "%s: no encodings", c->key);
        check_text(c, "cpl3_text", c->cpl3_text, true);
        check_text(c, "pg_text", c->pg_text, true);
        check_text(c, "vcpu_state", c->vcpu_state, false);
        check_text(c, "explanation", c->explanation, true);
    }
    cr_expect_null(pk_class_get(PK_CLASS_COUNT));
    cr_expect_null(pk_class_get((pk_class_id)-1));
}

/* ---- lookups ------------------------------------------------------------- */

static void expect_find(const char *name, pk_class_id want)
{
    const pk_class *c = pk_class_find(name);
    cr_expect_not_null(c, "pk_class_find(\"%s\") found nothing", name);
    if (c)
        cr_expect_eq(c->id, want, "pk_class_find(\"%s\") gave %s, not %s", name, c->key,
                     row_key(want));
}

Test(catalog, find_by_key_name_and_mnemonic)
{
    /* Every row by its key and by its display name, in any case. */
    for (unsigned id = 0; id < PK_CLASS_COUNT; id++) {
        const pk_class *c = pk_class_get((pk_class_id)id);
        char upper[64];
        size_t n = 0;
        for (; c->key[n] && n + 1 < sizeof upper; n++)
            upper[n] = (char)(c->key[n] >= 'a' && c->key[n] <= 'z' ? c->key[n] - 32
                                                                     : c->key[n]);
        upper[n] = 0;
        expect_find(c->key, c->id);
        expect_find(upper, c->id);
        expect_find(c->name, c->id);
    }
    expect_find("pop sreg", PK_CLASS_POP_SREG);
    expect_find("MOV r/m, Sreg", PK_CLASS_MOV_FROM_SREG);

    /* Mnemonics of rows matched by mnemonic alone. */
    expect_find("pushfq", PK_CLASS_PUSHF);
    expect_find("PUSHFD", PK_CLASS_PUSHF);
    expect_find("popfq", PK_CLASS_POPF);
    expect_find("iretd", PK_CLASS_IRET);
    expect_find("iretq", PK_CLASS_IRET);
    expect_find("insb", PK_CLASS_INS);
    expect_find("outsd", PK_CLASS_OUTS);
    expect_find("les", PK_CLASS_LDS_LES);
    expect_find("lgs", PK_CLASS_LSS_LFS_LGS);
    expect_find("clac", PK_CLASS_STAC_CLAC);
    expect_find("mwait", PK_CLASS_MONITOR_MWAIT);
    expect_find("xrstors64", PK_CLASS_XSAVES_XRSTORS);
    expect_find("wrgsbase", PK_CLASS_FSGSBASE);
    expect_find("wrussq", PK_CLASS_WRUSS);
    expect_find("rmpadjust", PK_CLASS_SEV_SNP);
    expect_find("PVALIDATE", PK_CLASS_SEV_SNP);
    expect_find("int1", PK_CLASS_INT1);

    /* MOV, PUSH, POP, CALL, JMP and RET name several things; only the keys
     * of their sensitive forms find a row. */
    const char *ambiguous[] = { "mov", "push", "pop", "call", "jmp", "ret" };
    for (unsigned i = 0; i < sizeof ambiguous / sizeof ambiguous[0]; i++)
        cr_expect_null(pk_class_find(ambiguous[i]), "\"%s\" should find no row",
                       ambiguous[i]);
    cr_expect_null(pk_class_find("nop"));
    cr_expect_null(pk_class_find(""));
    cr_expect_null(pk_class_find(NULL));
}

/* ---- names, sets, modes -------------------------------------------------- */

Test(catalog, enum_names)
{
    for (unsigned i = 0; i < PK_CPL3_COUNT; i++)
        cr_expect(strcmp(pk_cpl3_name((pk_cpl3)i), "?"), "cpl3 %u has no name", i);
    for (unsigned i = 0; i < PK_PG_COUNT; i++)
        cr_expect(strcmp(pk_pg_name((pk_pg)i), "?"), "pg %u has no name", i);
    cr_expect_str_eq(pk_cpl3_name(PK_CPL3_COUNT), "?");
    cr_expect_str_eq(pk_pg_name(PK_PG_COUNT), "?");
    cr_expect_str_eq(pk_set_name(PK_SET_PG), "pg");
    cr_expect_str_eq(pk_set_name(PK_SET_PRIVILEGED), "privileged");
    cr_expect_str_eq(pk_set_name(PK_SET_EXTENDED), "extended");
    cr_expect_str_eq(pk_set_name(PK_SET_ALL), "all");
}

Test(catalog, set_parse)
{
    unsigned s = 0;
    cr_expect(pk_set_parse("pg", &s));
    cr_expect_eq(s, PK_SET_PG);
    cr_expect(pk_set_parse("privileged,extended", &s));
    cr_expect_eq(s, PK_SET_PRIVILEGED | PK_SET_EXTENDED);
    cr_expect(pk_set_parse("all", &s));
    cr_expect_eq(s, PK_SET_ALL);
    cr_expect(!pk_set_parse("pg,bogus", &s));
    cr_expect(!pk_set_parse("", &s));
    cr_expect(!pk_set_parse(NULL, &s));
}

Test(catalog, modes_str)
{
    char buf[16];
    cr_expect_str_eq(pk_modes_str(PK_MODES_ALL, buf, sizeof buf), "16/32/64");
    cr_expect_str_eq(pk_modes_str(PK_MODES_LEGACY, buf, sizeof buf), "16/32");
    cr_expect_str_eq(pk_modes_str(PK_MODE_64, buf, sizeof buf), "64");
    cr_expect_str_eq(pk_modes_str(0, buf, sizeof buf), "");
}
