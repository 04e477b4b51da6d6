/* popek — the virtual CPU's reset state and its EFLAGS.
 *
 * Which EFLAGS bits are virtual: IF, IOPL, NT and ID live in vcpu->vflags,
 * because the guest process cannot hold them (its IF is always 1 and IOPL
 * 0, and PTRACE_SETREGS drops NT and ID: REFERENCE §7). Every other flag,
 * AC included, is the real one in regs->rflags: AC is user-settable, so
 * STAC/CLAC and POPF set it for real. The price, documented: with AC=1 the
 * host's CR0.AM makes a misaligned guest access raise a real #AC (SIGBUS).
 * The image the guest sees shows RF and VM as 0 (what PUSHF pushes) and
 * VIF/VIP as 0 (no VME/PVI in the virtual CPU). */
#include "internal/emu.h"

#include <string.h>

/* Descriptor attributes of flat ring-0 segments: G=1, P=1, S=1, DPL 0,
 * accessed; code is execute/read (0xB), data read/write (0x3). */
enum {
    FLAT_CODE32 = 0xC09B, /* D=1 */
    FLAT_CODE64 = 0xA09B, /* L=1, D=0 */
    FLAT_DATA = 0xC093,   /* B=1 */
};

static void flat(pk_segment *s, uint16_t sel, uint16_t attributes)
{
    s->selector = sel;
    s->base = 0;
    s->limit = 0xFFFFFFFF;
    s->attributes = attributes;
}

/* 32-bit: the Multiboot (v1) machine state: CR0.PE set, paging off, CS a
 * flat 32-bit code segment, the data registers a flat data segment, IF 0.
 * Multiboot leaves the selectors unspecified; popek says 0x08 and 0x10, the
 * usual first entries of a boot GDT. It also says GDTR and IDTR may be
 * invalid, so the guest must load its own before it loads a selector or
 * enables interrupts; popek shows the values after a processor reset (SDM
 * vol. 3A table 10-1: base 0, limit 0xFFFF). QEMU's multiboot loader
 * instead leaves GDTR at a table of its own; a guest relying on either is
 * wrong. 64-bit: DESIGN.md's boot contract. Both: CPL 0, LDTR and TR not
 * loaded (attributes 0: unusable), DR6/DR7 and XCR0 at their reset values. */
void pk_vcpu_reset(pk_vcpu *vcpu, unsigned bits)
{
    memset(vcpu, 0, sizeof *vcpu);
    vcpu->bits = bits == 64 ? 64 : 32;
    vcpu->cpl = 0;
    vcpu->vflags = 0; /* IF 0, IOPL 0, NT 0, ID 0 */
    flat(&vcpu->seg[PK_CS], 0x08, bits == 64 ? FLAT_CODE64 : FLAT_CODE32);
    for (unsigned s = 0; s < PK_SREG_COUNT; s++)
        if (s != PK_CS)
            flat(&vcpu->seg[s], 0x10, FLAT_DATA);
    vcpu->seg[PK_LDTR].limit = vcpu->seg[PK_TR].limit = 0xFFFF;
    vcpu->gdtr.limit = vcpu->idtr.limit = 0xFFFF;
    vcpu->cr0 = PK_CR0_PE | PK_CR0_ET;
    if (bits == 64) {
        vcpu->cr0 |= PK_CR0_PG;
        vcpu->cr4 = PK_CR4_PAE;
        vcpu->efer = PK_EFER_LME | PK_EFER_LMA;
    }
    vcpu->dr[6] = 0xFFFF0FF0;
    vcpu->dr[7] = 0x400;
    vcpu->xcr0 = 1;
}

uint64_t pk_vcpu_flags(const pk_vcpu *vcpu, const pk_regs *regs)
{
    uint64_t hidden = PK_VFLAGS_MASK | PK_FLAG_RF | PK_FLAG_VM | PK_FLAG_VIF | PK_FLAG_VIP;
    return (regs->rflags & ~hidden & 0x3FFFFF) | (vcpu->vflags & PK_VFLAGS_MASK) | 2;
}

unsigned pk_emu_iopl(const pk_vcpu *vcpu)
{
    return (vcpu->vflags >> 12) & 3;
}

/* SDM vol. 2, POPF and IRET operation; REFERENCE §5.1. */
void pk_emu_flags_load(pk_emu *e, uint64_t value, unsigned bits, unsigned cpl, bool iret)
{
    uint64_t old = pk_vcpu_flags(&e->vcpu, &e->regs);
    uint64_t mask = PK_FLAG_CF | PK_FLAG_PF | PK_FLAG_AF | PK_FLAG_ZF | PK_FLAG_SF |
                    PK_FLAG_TF | PK_FLAG_DF | PK_FLAG_OF | PK_FLAG_NT;
    if (cpl <= pk_emu_iopl(&e->vcpu))
        mask |= PK_FLAG_IF;
    if (cpl == 0)
        mask |= PK_FLAG_IOPL;
    if (bits >= 32)
        mask |= PK_FLAG_AC | PK_FLAG_ID | (iret ? PK_FLAG_RF : 0);
    else
        mask &= 0xFFFF;
    uint64_t img = (old & ~mask) | (value & mask);

    uint64_t real = ~PK_VFLAGS_MASK & ~(uint64_t)(PK_FLAG_VM | PK_FLAG_VIF | PK_FLAG_VIP) & 0x3FFFFF;
    e->regs.rflags = (e->regs.rflags & ~real) | (img & real);
    if (!iret)
        e->regs.rflags &= ~(uint64_t)PK_FLAG_RF; /* POPF always leaves RF 0 */
    if (!(old & PK_FLAG_IF) && (img & PK_FLAG_IF))
        e->res.interrupt_window = true;
    e->vcpu.vflags = img & PK_VFLAGS_MASK;
}
