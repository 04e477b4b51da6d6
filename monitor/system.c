/* popek — system registers: descriptor-table registers, control and debug
 * registers, MSRs, and the privileged no-ops.
 *
 * Emulated: SGDT, SIDT, LGDT, LIDT, SMSW, LMSW, CLTS, MOV to/from CR0, CR2,
 * CR3, CR4, CR8 and DR0-DR7, RDMSR, WRMSR (the table below), INVLPG,
 * INVD, WBINVD, XSETBV, SWAPGS, STAC, CLAC. The privileged ones raise
 * #GP(0) at a virtual CPL above 0 (STAC/CLAC #UD, as the SDM says).
 *
 * What is bookkeeping only (DESIGN.md): paging (CR3, CR0.PG, CR4 paging
 * bits, INVLPG), caches (CD/NW, INVD, WBINVD), debug registers (no
 * breakpoint fires, DR7.GD is ignored), XCR0 (the real one is the host's).
 * Not emulated (UNSUPPORTED): mode switches the guest process cannot make:
 * clearing CR0.PE in a 32-bit guest (real mode) and setting CR0.PG with
 * EFER.LME (entering long mode from a 32-bit guest). SGDT/SIDT/SMSW and
 * SLDT/STR honour a virtual CR4.UMIP. */
#include "internal/emu.h"

#include <inttypes.h>
#include <string.h>

static pk_emu_status need_cpl0(pk_emu *e)
{
    return e->vcpu.cpl ? pk_emu_gp(e, 0) : PK_EMU_DONE;
}

/* ---- GDTR, IDTR ------------------------------------------------------------ */

/* SGDT/SIDT m (REFERENCE §5.3): limit, then a 32-bit base (the full base
 * even with a 16-bit operand size, as the current SDM says) or, in 64-bit
 * mode, a 64-bit base: 6 or 10 bytes. */
static pk_emu_status store_table(pk_emu *e, bool idt)
{
    const pk_table_register *t = idt ? &e->vcpu.idtr : &e->vcpu.gdtr;
    uint8_t buf[10];
    unsigned n = e->vcpu.bits == 64 ? 10 : 6;
    uint64_t addr;
    if ((e->vcpu.cr4 & PK_CR4_UMIP) && e->vcpu.cpl > 0)
        return pk_emu_gp(e, 0);
    memcpy(buf, &t->limit, 2);
    memcpy(buf + 2, &t->base, 8);
    PK_EMU_TRY(pk_emu_op_addr(e, &e->ops[0], &addr));
    PK_EMU_TRY(pk_emu_write(e, addr, buf, n, 0));
    return pk_emu_effect(e, "%s -> base 0x%" PRIx64 " limit 0x%x", idt ? "IDTR" : "GDTR",
                         t->base, t->limit);
}

/* LGDT/LIDT m (SDM vol. 2): 6 bytes, of which a 16-bit operand size keeps
 * a 24-bit base; 10 bytes in 64-bit mode, where the base must be
 * canonical. */
static pk_emu_status load_table(pk_emu *e, bool idt)
{
    uint8_t buf[10] = { 0 };
    unsigned n = e->vcpu.bits == 64 ? 10 : 6;
    uint64_t addr, base = 0;
    uint16_t limit;
    PK_EMU_TRY(need_cpl0(e));
    PK_EMU_TRY(pk_emu_op_addr(e, &e->ops[0], &addr));
    PK_EMU_TRY(pk_emu_read(e, addr, buf, n, 0));
    memcpy(&limit, buf, 2);
    memcpy(&base, buf + 2, n - 2);
    if (e->vcpu.bits == 32 && e->insn->operand_width == 16)
        base &= 0xFFFFFF;
    if (e->vcpu.bits == 64 && !pk_emu_canonical(base))
        return pk_emu_gp(e, 0);
    pk_table_register *t = idt ? &e->vcpu.idtr : &e->vcpu.gdtr;
    t->base = base;
    t->limit = limit;
    return pk_emu_effect(e, "%s <- base 0x%" PRIx64 " limit 0x%x", idt ? "IDTR" : "GDTR",
                         base, limit);
}

/* ---- CR0 ---------------------------------------------------------------------------- */

#define CR0_DEFINED (PK_CR0_PE | PK_CR0_MP | PK_CR0_EM | PK_CR0_TS | PK_CR0_ET |      \
                     PK_CR0_NE | PK_CR0_WP | PK_CR0_AM | PK_CR0_NW | PK_CR0_CD |      \
                     PK_CR0_PG)

/* MOV CR0 (SDM vol. 2 MOV CR; vol. 3A §2.5): reserved bits of 31:0 keep
 * their value, bits 63:32 must be 0, ET reads as 1 (P6 and later); PG
 * without PE and NW without CD are #GP(0), and so is clearing PG in
 * 64-bit mode. */
static pk_emu_status write_cr0(pk_emu *e, uint64_t v)
{
    uint64_t old = e->vcpu.cr0;
    if (v >> 32)
        return pk_emu_gp(e, 0);
    v = (v & CR0_DEFINED) | (old & ~(uint64_t)CR0_DEFINED) | PK_CR0_ET;
    if (((v & PK_CR0_PG) && !(v & PK_CR0_PE)) || ((v & PK_CR0_NW) && !(v & PK_CR0_CD)))
        return pk_emu_gp(e, 0);
    if (e->vcpu.bits == 64 && !(v & PK_CR0_PG))
        return pk_emu_gp(e, 0);
    if (e->vcpu.bits == 32 && !(v & PK_CR0_PE))
        return pk_emu_unsupported(e, "CR0.PE cleared: real mode is not emulated");
    if (e->vcpu.bits == 32 && (v & PK_CR0_PG) && !(old & PK_CR0_PG) &&
        (e->vcpu.efer & PK_EFER_LME)) {
        if (!(e->vcpu.cr4 & PK_CR4_PAE))
            return pk_emu_gp(e, 0);
        return pk_emu_unsupported(e, "CR0.PG with EFER.LME: long mode from a 32-bit guest");
    }
    e->vcpu.cr0 = v;
    return PK_EMU_DONE;
}

/* SMSW r/m (REFERENCE §5.4): memory gets CR0[15:0]; a 16-bit register its
 * low half; a 32-bit register CR0[31:0] (the SDM leaves bits 31:16
 * undefined outside 64-bit mode; popek, like current CPUs, shows CR0's
 * own); a 64-bit register all of CR0. pk_emu_op_write truncates to the
 * operand's own size. */
static pk_emu_status smsw(pk_emu *e)
{
    if ((e->vcpu.cr4 & PK_CR4_UMIP) && e->vcpu.cpl > 0)
        return pk_emu_gp(e, 0);
    PK_EMU_TRY(pk_emu_op_write(e, &e->ops[0], e->vcpu.cr0));
    return pk_emu_effect(e, "CR0 -> 0x%" PRIx64, e->vcpu.cr0);
}

/* LMSW r/m16: loads PE, MP, EM, TS; cannot clear PE. */
static pk_emu_status lmsw(pk_emu *e)
{
    uint64_t v;
    PK_EMU_TRY(need_cpl0(e));
    PK_EMU_TRY(pk_emu_op_read(e, &e->ops[0], &v));
    uint64_t low = PK_CR0_PE | PK_CR0_MP | PK_CR0_EM | PK_CR0_TS;
    e->vcpu.cr0 = (e->vcpu.cr0 & ~low) | (v & low) | (e->vcpu.cr0 & PK_CR0_PE);
    return pk_emu_effect(e, "CR0 <- 0x%" PRIx64 " (lmsw)", e->vcpu.cr0);
}

static pk_emu_status clts(pk_emu *e)
{
    PK_EMU_TRY(need_cpl0(e));
    e->vcpu.cr0 &= ~(uint64_t)PK_CR0_TS;
    return pk_emu_effect(e, "CR0.TS <- 0");
}

/* ---- CR2, CR3, CR4, CR8 ------------------------------------------------------------- */

/* CR4 bits the virtual CPU has. VME and PVI are left out on purpose: with
 * PVI, CLI/STI at CPL 3 would change VIF, which popek does not model; also
 * out are VMX, SMX, LA57, CET and PKS. */
#define CR4_SUPPORTED (0x0FFCull | 1ull << 16 | 1ull << 17 | 1ull << 18 | 1ull << 20 |  \
                       1ull << 21 | 1ull << 22)

static pk_emu_status write_cr4(pk_emu *e, uint64_t v)
{
    if (v & ~CR4_SUPPORTED)
        return pk_emu_gp(e, 0);
    if (e->vcpu.bits == 64 && !(v & PK_CR4_PAE))
        return pk_emu_gp(e, 0);
    if ((v & PK_CR4_PCIDE) && !(e->vcpu.cr4 & PK_CR4_PCIDE) &&
        (e->vcpu.bits != 64 || (e->vcpu.cr3 & 0xFFF)))
        return pk_emu_gp(e, 0);
    e->vcpu.cr4 = v;
    return PK_EMU_DONE;
}

/* CR3: bits 63:52 are beyond any MAXPHYADDR, #GP(0) when set (bit 63, the
 * PCID no-flush hint, is accepted and not stored when CR4.PCIDE=1). */
static pk_emu_status write_cr3(pk_emu *e, uint64_t v)
{
    if ((e->vcpu.cr4 & PK_CR4_PCIDE) && (v >> 63))
        v &= ~(1ull << 63);
    if (v >> 52)
        return pk_emu_gp(e, 0);
    e->vcpu.cr3 = v;
    return PK_EMU_DONE;
}

static pk_emu_status mov_cr(pk_emu *e)
{
    const ZydisDecodedOperand *dst = &e->ops[0], *src = &e->ops[1];
    bool to_cr = ZydisRegisterGetClass(dst->reg.value) == ZYDIS_REGCLASS_CONTROL;
    unsigned n = (unsigned)ZydisRegisterGetId(to_cr ? dst->reg.value : src->reg.value);
    uint64_t *slot[16] = { [0] = &e->vcpu.cr0, [2] = &e->vcpu.cr2, [3] = &e->vcpu.cr3,
                           [4] = &e->vcpu.cr4, [8] = &e->vcpu.cr8 };

    PK_EMU_TRY(need_cpl0(e));
    if (n > 8 || !slot[n] || (n == 8 && e->vcpu.bits != 64))
        return pk_emu_ud(e);
    if (!to_cr) {
        pk_emu_reg_set(e, dst->reg.value, *slot[n]);
        return pk_emu_effect(e, "CR%u -> 0x%" PRIx64, n, *slot[n]);
    }
    uint64_t v = pk_emu_reg_get(e, src->reg.value);
    switch (n) {
    case 0: PK_EMU_TRY(write_cr0(e, v)); break;
    case 3: PK_EMU_TRY(write_cr3(e, v)); break;
    case 4: PK_EMU_TRY(write_cr4(e, v)); break;
    case 8:
        if (v & ~0xFull) /* TPR: bits 3:0 */
            return pk_emu_gp(e, 0);
        e->vcpu.cr8 = v;
        break;
    default: e->vcpu.cr2 = v; break;
    }
    return pk_emu_effect(e, "CR%u <- 0x%" PRIx64, n, *slot[n]);
}

/* ---- debug registers ------------------------------------------------------------------ */

/* MOV DRn (SDM vol. 3A §18.2): DR4/DR5 alias DR6/DR7 unless CR4.DE, which
 * makes them #UD; DR6/DR7 bits 63:32 must be 0. DR7.GD would make the
 * access a #DB, which popek does not model (a fault leaves
 * the vcpu untouched, and the #DB must set DR6.BD). DR6 keeps B0-B3, BD,
 * BS, BT; its other bits read 1 (bit 12 reads 0), as on a CPU without bus-
 * lock detection or RTM; DR7 bit 10 reads 1. */
static pk_emu_status mov_dr(pk_emu *e)
{
    const ZydisDecodedOperand *dst = &e->ops[0], *src = &e->ops[1];
    bool to_dr = ZydisRegisterGetClass(dst->reg.value) == ZYDIS_REGCLASS_DEBUG;
    unsigned n = (unsigned)ZydisRegisterGetId(to_dr ? dst->reg.value : src->reg.value);

    PK_EMU_TRY(need_cpl0(e));
    if (n > 7 || ((n == 4 || n == 5) && (e->vcpu.cr4 & PK_CR4_DE)))
        return pk_emu_ud(e);
    if (n == 4 || n == 5)
        n += 2;
    if (!to_dr) {
        pk_emu_reg_set(e, dst->reg.value, e->vcpu.dr[n]);
        return pk_emu_effect(e, "DR%u -> 0x%" PRIx64, n, e->vcpu.dr[n]);
    }
    uint64_t v = pk_emu_reg_get(e, src->reg.value);
    if (n >= 6 && (v >> 32))
        return pk_emu_gp(e, 0);
    if (n == 6)
        v = (v & 0xE00F) | 0xFFFF0FF0;
    else if (n == 7)
        v |= 0x400;
    e->vcpu.dr[n] = v;
    return pk_emu_effect(e, "DR%u <- 0x%" PRIx64, n, v);
}

/* ---- MSRs ------------------------------------------------------------------------------ */

enum {
    MSR_RO = 1 << 0,        /* a write raises #GP(0) */
    MSR_CANONICAL = 1 << 1, /* the value is an address and must be canonical */
    MSR_PAT = 1 << 2,       /* eight memory types, each 0, 1, 4, 5, 6 or 7 */
    MSR_64 = 1 << 3,        /* exists in 64-bit guests only */
};

/* The MSRs the virtual CPU has; any other index is #GP(0). reset is what
 * RDMSR returns before the guest writes; reserved bits must be 0 in a
 * write; fixed bits keep their value (they are read-only). */
typedef struct msr_def {
    uint32_t index;
    const char *name;
    uint64_t reset, reserved, fixed;
    unsigned flags;
} msr_def;

static const msr_def msr_defs[] = {
    /* APIC at 0xFEE00000, enabled (bit 11), this is the BSP (bit 8,
     * read-only); base below 4 GiB; x2APIC (bit 10) not offered */
    { 0x1B, "IA32_APIC_BASE", 0xFEE00900, ~0xFFFFF900ull, 0x100, 0 },
    /* MTRRs: none (VCNT 0, no fixed ranges, no WC); all memory write-back */
    { 0xFE, "IA32_MTRRCAP", 0, 0, 0, MSR_RO },
    { 0x174, "IA32_SYSENTER_CS", 0, ~0xFFFFull, 0, 0 },
    { 0x175, "IA32_SYSENTER_ESP", 0, 0, 0, MSR_CANONICAL },
    { 0x176, "IA32_SYSENTER_EIP", 0, 0, 0, MSR_CANONICAL },
    /* fast strings on; BTS and PEBS unavailable (bits 11, 12, read-only);
     * writable: fast strings (0), limit CPUID maxval (22), XD disable (34) */
    { 0x1A0, "IA32_MISC_ENABLE", 0x1801, ~(1ull | 1ull << 22 | 1ull << 34 | 0x1800), 0x1800, 0 },
    { 0x277, "IA32_PAT", 0x0007040600070406ull, 0xF8F8F8F8F8F8F8F8ull, 0, MSR_PAT },
    /* E=1, default type WB (6); FE must stay 0 (no fixed MTRRs) */
    { 0x2FF, "IA32_MTRR_DEF_TYPE", 0x806, ~0x8FFull, 0, 0 },
    { 0xC0000081, "IA32_STAR", 0, 0, 0, 0 },
    { 0xC0000082, "IA32_LSTAR", 0, 0, 0, MSR_CANONICAL | MSR_64 },
    { 0xC0000083, "IA32_CSTAR", 0, 0, 0, MSR_CANONICAL | MSR_64 },
    { 0xC0000084, "IA32_FMASK", 0, ~0xFFFFFFFFull, 0, MSR_64 },
    { 0xC0000103, "IA32_TSC_AUX", 0, ~0xFFFFFFFFull, 0, 0 },
};

/* Kept outside the table: EFER, FS_BASE, GS_BASE, KERNEL_GS_BASE. */
enum {
    MSR_EFER = 0xC0000080, MSR_FS_BASE = 0xC0000100, MSR_GS_BASE = 0xC0000101,
    MSR_KERNEL_GS_BASE = 0xC0000102,
};

static const msr_def *msr_find(uint32_t index)
{
    for (size_t i = 0; i < sizeof msr_defs / sizeof msr_defs[0]; i++)
        if (msr_defs[i].index == index)
            return &msr_defs[i];
    return NULL;
}

/* The guest's value: vcpu->msrs holds those written so far. */
static uint64_t msr_value(const pk_vcpu *v, const msr_def *d)
{
    for (unsigned i = 0; i < v->nmsrs; i++)
        if (v->msrs[i].index == d->index)
            return v->msrs[i].value;
    return d->reset;
}

uint64_t pk_emu_msr(const pk_vcpu *v, uint32_t index)
{
    const msr_def *d = msr_find(index);
    return d ? msr_value(v, d) : 0;
}

static void msr_store(pk_vcpu *v, uint32_t index, uint64_t value)
{
    unsigned i = 0;
    while (i < v->nmsrs && v->msrs[i].index != index)
        i++;
    _Static_assert(sizeof msr_defs / sizeof msr_defs[0] <= PK_VCPU_MSRS, "msrs[] too small");
    if (i == v->nmsrs)
        v->nmsrs++;
    v->msrs[i].index = index;
    v->msrs[i].value = value;
}

static bool pat_ok(uint64_t v)
{
    for (unsigned i = 0; i < 8; i++) {
        unsigned t = (v >> (8 * i)) & 0xFF;
        if (t == 2 || t == 3 || t > 7)
            return false;
    }
    return true;
}

/* Reads index into *value; false for an MSR the virtual CPU lacks. */
static bool msr_read(const pk_emu *e, uint32_t index, uint64_t *value)
{
    const msr_def *d = msr_find(index);
    bool is64 = e->vcpu.bits == 64;
    switch (index) {
    case MSR_EFER: *value = e->vcpu.efer; return true;
    case MSR_FS_BASE: *value = e->regs.fs_base; return is64;
    case MSR_GS_BASE: *value = e->regs.gs_base; return is64;
    case MSR_KERNEL_GS_BASE: *value = e->vcpu.kernel_gs_base; return is64;
    default: break;
    }
    if (!d || ((d->flags & MSR_64) && !is64))
        return false;
    *value = msr_value(&e->vcpu, d);
    return true;
}

/* EFER (SDM vol. 3A §2.2.1): SCE, LME, NXE writable; LMA read-only; LME
 * cannot change while paging is on. */
static pk_emu_status write_efer(pk_emu *e, uint64_t v)
{
    uint64_t writable = PK_EFER_SCE | PK_EFER_LME | PK_EFER_NXE;
    if (v & ~(writable | PK_EFER_LMA))
        return pk_emu_gp(e, 0);
    if (((v ^ e->vcpu.efer) & PK_EFER_LME) && (e->vcpu.cr0 & PK_CR0_PG))
        return pk_emu_gp(e, 0);
    e->vcpu.efer = (v & writable) | (e->vcpu.efer & PK_EFER_LMA);
    return PK_EMU_DONE;
}

static pk_emu_status msr_write(pk_emu *e, uint32_t index, uint64_t v)
{
    const msr_def *d = msr_find(index);
    bool is64 = e->vcpu.bits == 64;
    if ((index == MSR_FS_BASE || index == MSR_GS_BASE || index == MSR_KERNEL_GS_BASE) && is64) {
        if (!pk_emu_canonical(v))
            return pk_emu_gp(e, 0);
        *(index == MSR_FS_BASE ? &e->regs.fs_base
          : index == MSR_GS_BASE ? &e->regs.gs_base : &e->vcpu.kernel_gs_base) = v;
        return PK_EMU_DONE;
    }
    if (index == MSR_EFER)
        return write_efer(e, v);
    if (!d || (d->flags & MSR_RO) || ((d->flags & MSR_64) && !is64) || (v & d->reserved) ||
        ((d->flags & MSR_CANONICAL) && !pk_emu_canonical(v)) ||
        ((d->flags & MSR_PAT) && !pat_ok(v)))
        return pk_emu_gp(e, 0);
    msr_store(&e->vcpu, index, (v & ~d->fixed) | (msr_value(&e->vcpu, d) & d->fixed));
    return PK_EMU_DONE;
}

/* RDMSR/WRMSR: ECX the index, EDX:EAX the value (writes of EAX/EDX clear
 * bits 63:32 of RAX/RDX in 64-bit mode). */
static pk_emu_status rdmsr_wrmsr(pk_emu *e, bool write)
{
    uint32_t index = (uint32_t)e->regs.gpr[PK_RCX];
    uint64_t v;
    PK_EMU_TRY(need_cpl0(e));
    if (write) {
        v = (e->regs.gpr[PK_RDX] << 32) | (uint32_t)e->regs.gpr[PK_RAX];
        PK_EMU_TRY(msr_write(e, index, v));
        return pk_emu_effect(e, "MSR 0x%x <- 0x%" PRIx64, index, v);
    }
    if (!msr_read(e, index, &v))
        return pk_emu_gp(e, 0);
    pk_emu_gpr_set(e, PK_RAX, 32, (uint32_t)v);
    pk_emu_gpr_set(e, PK_RDX, 32, v >> 32);
    return pk_emu_effect(e, "MSR 0x%x -> 0x%" PRIx64, index, v);
}

/* ---- the rest -------------------------------------------------------------------------- */

/* XSETBV (SDM vol. 2): #UD without CR4.OSXSAVE; XCR0 only (ECX=0); x87 must
 * stay on, AVX needs SSE; the virtual CPU offers x87, SSE and AVX state. */
static pk_emu_status xsetbv(pk_emu *e)
{
    uint64_t v = (e->regs.gpr[PK_RDX] << 32) | (uint32_t)e->regs.gpr[PK_RAX];
    if (!(e->vcpu.cr4 & PK_CR4_OSXSAVE))
        return pk_emu_ud(e);
    PK_EMU_TRY(need_cpl0(e));
    if ((uint32_t)e->regs.gpr[PK_RCX] != 0 || (v & ~7ull) || !(v & 1) || ((v & 4) && !(v & 2)))
        return pk_emu_gp(e, 0);
    e->vcpu.xcr0 = v;
    return pk_emu_effect(e, "XCR0 <- 0x%" PRIx64, v);
}

static pk_emu_status swapgs(pk_emu *e)
{
    if (e->vcpu.bits != 64)
        return pk_emu_ud(e);
    PK_EMU_TRY(need_cpl0(e));
    uint64_t gs = e->regs.gs_base;
    e->regs.gs_base = e->vcpu.kernel_gs_base;
    e->vcpu.kernel_gs_base = gs;
    return pk_emu_effect(e, "GS base <- 0x%" PRIx64 ", KERNEL_GS_BASE <- 0x%" PRIx64,
                         e->regs.gs_base, gs);
}

/* STAC/CLAC: #UD above CPL 0 (SDM vol. 2); AC is a real flag. */
static pk_emu_status stac_clac(pk_emu *e)
{
    bool set = e->insn->mnemonic == ZYDIS_MNEMONIC_STAC;
    if (e->vcpu.cpl)
        return pk_emu_ud(e);
    if (set)
        e->regs.rflags |= PK_FLAG_AC;
    else
        e->regs.rflags &= ~(uint64_t)PK_FLAG_AC;
    return pk_emu_effect(e, "AC <- %d", set);
}

/* INVLPG, INVD, WBINVD: nothing to do beyond the privilege check (no TLB
 * or cache is emulated; INVLPG does not access its operand). */
static pk_emu_status privileged_nop(pk_emu *e)
{
    PK_EMU_TRY(need_cpl0(e));
    return pk_emu_effect(e, "%s (no-op)", ZydisMnemonicGetString(e->insn->mnemonic));
}

pk_emu_status pk_emu_system_insn(pk_emu *e, pk_class_id row)
{
    switch (row) {
    case PK_CLASS_SGDT: return store_table(e, false);
    case PK_CLASS_SIDT: return store_table(e, true);
    case PK_CLASS_LGDT: return load_table(e, false);
    case PK_CLASS_LIDT: return load_table(e, true);
    case PK_CLASS_SMSW: return smsw(e);
    case PK_CLASS_LMSW: return lmsw(e);
    case PK_CLASS_CLTS: return clts(e);
    case PK_CLASS_MOV_CR: return mov_cr(e);
    case PK_CLASS_MOV_DR: return mov_dr(e);
    case PK_CLASS_RDMSR: return rdmsr_wrmsr(e, false);
    case PK_CLASS_WRMSR: return rdmsr_wrmsr(e, true);
    case PK_CLASS_XSETBV: return xsetbv(e);
    case PK_CLASS_SWAPGS: return swapgs(e);
    case PK_CLASS_STAC_CLAC: return stac_clac(e);
    case PK_CLASS_INVLPG:
    case PK_CLASS_INVD:
    case PK_CLASS_WBINVD: return privileged_nop(e);
    default: return pk_emu_unsupported(e, "not a system-register instruction");
    }
}
