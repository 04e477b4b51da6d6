/* samples/guest64/guest64.c — a small 64-bit kernel that checks, one line
 * each, what the x86 instructions a monitor must virtualize return at
 * ring 0 in long mode.
 *
 * The same file boots on `qemu-system-x86_64 -kernel` (through the 32-bit
 * stub in entry.S) and under `popek boot` (entered in long mode at _start).
 * It sets up its own page tables, GDT, LDT, 64-bit TSS and IDT, the PIC
 * and the PIT, and prints `check NAME: VALUE` lines on the UART. Every
 * value is fixed by the architecture and by what the guest itself loaded,
 * never by timing, so the transcript from QEMU (real ring 0) is the
 * reference a monitor's transcript must equal. README.md lists every
 * check, what it shows, and what differs from guest32.
 *
 * One function per family of instructions; kmain() at the end calls them in
 * order. The families that read the same in 32-bit mode, and the UART,
 * PIC, PIT and exception record, are in ../common/ (shared with guest32);
 * this file keeps what long mode changes: paging, 16-byte descriptors and
 * gates, the interrupt frame, segment bases, far transfers, IRETQ, IST,
 * SYSCALL/SYSRET and the ring-3 trip. SDM references are to the Intel SDM (Vol. 2 for instructions,
 * Vol. 3A for descriptors, interrupts, paging and the TSS). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch64.h"
#include "layout.h"
#include "../common/checks.h"
#include "../common/console.h"
#include "../common/faults.h"
#include "../common/multiboot.h"
#include "../common/timer.h"

/* ======================================================================
 * Descriptor tables (the selectors and vectors are in layout.h)
 * ====================================================================== */

/* All tables in one struct at a fixed address (link.ld puts .data.tables at
 * 0x00120000), so the CR3, SIDT and SGDT lines do not move: the page
 * tables (0x120000-0x122fff), the IDT (0x123000), then the GDT
 * (0x124000), LDT and TSS. The CPU writes to the GDT (LTR sets the TSS
 * busy bit), so all of it lives on data pages. */
struct tables {
    uint64_t pml4[512], pdpt[512], pd[512];
    gate64 idt[256];
    seg_desc gdt[GDT_ENTRIES];
    seg_desc ldt[LDT_ENTRIES];
    tss64 tss;
};
__attribute__((section(".data.tables"), aligned(4096)))
struct tables tables;

/* From entry.S. */
extern const uint8_t isr_stubs[];       /* 256 stubs of 16 bytes */
extern uint8_t boot_stack_top[], ring0_stack_top[], ring3_stack_top[],
    ist1_stack_top[], lss_stack_top[];
extern void far_target(void), far_target_imm(void), ring3_code(void),
    ring3_after_syscall(void), syscall_entry(void);
extern uint64_t ring3_run(void);
extern void ring3_leave(void) __attribute__((noreturn));

/* An LDT or TSS descriptor: two GDT slots. */
static void set_system(seg_desc *slot, uint64_t base, uint32_t limit,
                       uint8_t access)
{
    sys_desc64 *d = (sys_desc64 *)slot;
    set_segment(&d->low, (uint32_t)base, limit, access, 0);
    d->base_upper = (uint32_t)(base >> 32);
    d->reserved = 0;
}

static void set_gate(gate64 *g, uint64_t offset, uint16_t selector,
                     uint8_t access, uint8_t ist)
{
    g->offset_lo = offset & 0xffff;
    g->selector = selector;
    g->ist = ist;
    g->access = access;
    g->offset_mid = (offset >> 16) & 0xffff;
    g->offset_hi = (uint32_t)(offset >> 32);
    g->reserved = 0;
}

/* ======================================================================
 * Exceptions and interrupts
 * ====================================================================== */

/* What isr_common (entry.S) leaves on the stack. In 64-bit mode the CPU
 * always pushes SS:RSP, whatever the privilege levels. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;      /* pushed by the CPU */
};

/* Copies of last_fault made by ring3_code in entry.S (common/faults.h). */
struct fault ring3_faults[4];

/* Software interrupts 0x81-0x83: what the handler saw. */
static volatile struct {
    uint64_t if_inside, frame_cs, frame_if, frame_ss, frame_rsp;
    bool on_ist, frame_aligned;
} soft_int;

/* int $0x80 from ring 3: the frame the CPU pushed on the ring-0 stack. */
static struct {
    uint64_t cs, ss, rsp, rflags, ss_inside;
    bool on_tss_stack;
} int80_frame;

/* Called by isr_common for every vector. */
void trap_entry(struct trap_frame *f);
void trap_entry(struct trap_frame *f)
{
    uint64_t v = f->vector;

    if (v == VEC_SOFT_TRAP || v == VEC_SOFT_INTR || v == VEC_SOFT_IST) {
        soft_int.if_inside = flags_if(read_flags());
        soft_int.frame_cs = f->cs;
        soft_int.frame_if = flags_if(f->rflags);
        soft_int.frame_ss = f->ss;
        soft_int.frame_rsp = f->rsp;
        soft_int.on_ist = (uint8_t *)(&f->ss + 1) == ist1_stack_top;
        soft_int.frame_aligned = ((uint64_t)(&f->ss + 1) & 15) == 0;
        return;
    }
    if (v == VEC_SYSCALL) {
        int80_frame.cs = f->cs;
        int80_frame.ss = f->ss;
        int80_frame.rsp = f->rsp;
        int80_frame.rflags = f->rflags;
        int80_frame.ss_inside = READ_SEG(ss);
        /* The frame ends exactly at the TSS's RSP0. */
        int80_frame.on_tss_stack = (uint8_t *)(&f->ss + 1) == ring0_stack_top;
        ring3_leave();
    }
    trap_default("guest64", v, f->error, &f->rip, f->cs);
}

/* ======================================================================
 * Setup: page tables, GDT, segment registers, LDT, TSS, IDT
 * ====================================================================== */

/* The guest's own identity map of the first GiB in 2 MiB pages, user
 * accessible (ring 3 runs in it too). Under QEMU it replaces the stub's
 * map, so it must cover everything the guest touches; under popek paging
 * is bookkeeping (CR3 is recorded, nothing walks the tables). */
static void setup_paging(void)
{
    const uint64_t flags = PTE_P | PTE_RW | PTE_US;
    tables.pml4[0] = (uint64_t)tables.pdpt | flags;
    tables.pdpt[0] = (uint64_t)tables.pd | flags;
    for (uint64_t i = 0; i < 512; i++)
        tables.pd[i] = (i << 21) | flags | PTE_PS;
    WRITE_CR(3, (uint64_t)tables.pml4);
}

static void setup_descriptor_tables(void)
{
    const uint8_t kdata = ACC_P | ACC_DPL(0) | ACC_S | TYPE_DATA_RW;
    seg_desc *gdt = tables.gdt;

    /* Code segments: L = 1, D = 0 (64-bit); base and limit are ignored in
     * 64-bit mode, but LAR and LSL still show them. */
    set_segment(&gdt[SEL_KCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_L);
    set_segment(&gdt[SEL_KDATA >> 3], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE32 >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UDATA >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_L);
    set_segment(&gdt[SEL_CONFORMING >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XRC, FLG_G | FLG_L);
    set_segment(&gdt[SEL_SMALL >> 3], 0, 0xff, kdata, FLG_DB);
    set_segment(&gdt[SEL_NOTPRESENT >> 3], 0, 0xfffff,
                ACC_DPL(0) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_EXECONLY >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_X, FLG_G | FLG_L);
    set_system(&gdt[SEL_LDT >> 3], (uint64_t)tables.ldt,
               sizeof(tables.ldt) - 1, ACC_P | TYPE_LDT);
    set_system(&gdt[SEL_TSS >> 3], (uint64_t)&tables.tss,
               sizeof(tables.tss) - 1, ACC_P | TYPE_TSS);
    set_gate((gate64 *)&gdt[SEL_CALLGATE >> 3], (uint64_t)far_target,
             SEL_KCODE, ACC_P | ACC_DPL(0) | TYPE_CALL, 0);

    set_segment(&tables.ldt[0], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&tables.ldt[1], 0, 0xfff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_DB);

    /* RSP0 is the stack the CPU switches to on an interrupt from ring 3,
     * IST1 the one of the gate that names it. An I/O map base past the
     * limit means no I/O permission bitmap. */
    tables.tss.rsp[0] = (uint64_t)ring0_stack_top;
    tables.tss.ist[0] = (uint64_t)ist1_stack_top;
    tables.tss.iomap_base = sizeof(tables.tss);

    /* Every vector gets an interrupt gate to its stub, except the software
     * interrupts: 0x80 is a DPL-3 trap gate (ring 3 may call it), 0x81 a
     * trap gate (IF stays as it was), 0x82 an interrupt gate (IF cleared),
     * 0x83 an interrupt gate that switches to IST1. */
    for (unsigned v = 0; v < 256; v++)
        set_gate(&tables.idt[v], (uint64_t)(isr_stubs + 16 * v), SEL_KCODE,
                 ACC_P | ACC_DPL(0) | TYPE_INTR, 0);
    tables.idt[VEC_SYSCALL].access = ACC_P | ACC_DPL(3) | TYPE_TRAP;
    tables.idt[VEC_SOFT_TRAP].access = ACC_P | ACC_DPL(0) | TYPE_TRAP;
    tables.idt[VEC_SOFT_IST].ist = 1;

    /* LGDT, then a far return to reload CS from the new table (there is no
     * direct far JMP in 64-bit mode), then MOV to every data segment
     * register; LIDT; LLDT and LTR (of 16-byte descriptors). */
    table_reg gdtr = { sizeof(tables.gdt) - 1, (uint64_t)tables.gdt };
    __asm__ volatile("lgdt %0\n\t"
                     "pushq $%c1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:" : : "m"(gdtr), "i"(SEL_KCODE) : "rax", "memory");
    load_data_segments(SEL_KDATA);
    lidt(tables.idt, sizeof(tables.idt));
    lldt(SEL_LDT);
    ltr(SEL_TSS);
}

/* ======================================================================
 * Checks, one function per family
 * ====================================================================== */

/* Multiboot: the loader's memory sizes (there is no magic in EAX here:
 * popek enters a 64-bit guest with RDI only; common/checks.c). And the
 * long-mode entry state: CR0 = PE|ET|PG, CR4 = PAE, EFER = LME|LMA. */
static void check_entry(const struct multiboot_info *mbi,
                        uint64_t initial_rflags)
{
    check_boot_info(mbi, initial_rflags);
    check_hex("cr0_initial", READ_CR(0));
    check_hex("cr4_initial", READ_CR(4));
    check_hex("efer_initial", rdmsr(MSR_EFER));
}

/* Control registers, debug registers, MSRs, cache/TLB instructions. All
 * privileged except SMSW, which reads CR0 without a trap: in 64-bit mode
 * SMSW r32 and r64 get all of CR0 (PG included), r16 and m16 its low
 * half. */
static void check_control_registers(void)
{
    uint64_t cr0 = READ_CR(0);

    uint16_t msw_r16;
    uint32_t msw_r32;
    uint64_t msw_r64 = ~0ull;
    __asm__ volatile("smsw %0" : "=r"(msw_r16));
    __asm__ volatile("smsw %0" : "=r"(msw_r32));
    __asm__ volatile("smsw %0" : "+r"(msw_r64));
    check_hex("smsw_m16", smsw_m16());
    check_hex("smsw_r16", msw_r16);
    check_hex("smsw_r32", msw_r32);
    check_hex("smsw_r64", msw_r64);

    check_cr0_ts(cr0);

    /* CR2 takes what is written; CR3 our own PML4. CR4.PSE is ignored in
     * long mode but reads back. CR8 is the task-priority register (4 bits),
     * a 64-bit-mode register; it goes back to 0 at once. */
    WRITE_CR(2, 0x12345000);
    check_hex("cr2", READ_CR(2));
    setup_paging();
    check_hex("cr3", READ_CR(3));
    uint64_t cr4 = READ_CR(4);
    WRITE_CR(4, cr4 | CR4_PSE);
    check_hex("cr4_pse", READ_CR(4));
    WRITE_CR(4, cr4);
    check_hex("cr8_initial", READ_CR(8));
    WRITE_CR(8, 5);
    check_hex("cr8", READ_CR(8));
    WRITE_CR(8, 0);

    check_debug_registers();
    check_sysenter_msrs();
    /* SYSCALL's MSRs: STAR holds the selectors (kernel CS 0x08 in 47:32,
     * SYSRET's base 0x18 in 63:48), LSTAR the 64-bit entry, FMASK the
     * RFLAGS bits SYSCALL clears (IF, TF, DF, AC, as Linux). */
    wrmsr(MSR_STAR, (uint64_t)0x18 << 48 | (uint64_t)SEL_KCODE << 32);
    wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
    wrmsr(MSR_FMASK, EFLAGS_IF | EFLAGS_TF | EFLAGS_DF | EFLAGS_AC);
    check_hex("msr_star", rdmsr(MSR_STAR));
    check_yes("msr_lstar", rdmsr(MSR_LSTAR) == (uint64_t)syscall_entry);
    check_hex("msr_fmask", rdmsr(MSR_FMASK));
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    check_hex("efer_sce", rdmsr(MSR_EFER));
    check_cache_instructions(&tables);
}

/* FS and GS bases: in 64-bit mode they are MSRs, and the memory at
 * %fs:0 / %gs:0 is read through them. SWAPGS exchanges GS_BASE with
 * KERNEL_GS_BASE (a kernel's way to its per-CPU data on entry). */
static uint64_t fs_word = 0x1111, gs_word = 0x2222, kgs_word = 0x3333;

static void check_segment_bases(void)
{
    uint64_t v;
    wrmsr(MSR_FS_BASE, (uint64_t)&fs_word);
    __asm__ volatile("mov %%fs:0, %0" : "=r"(v) : : "memory");
    check_hex("fs_base_read", v);
    check_yes("fs_base_msr", rdmsr(MSR_FS_BASE) == (uint64_t)&fs_word);
    wrmsr(MSR_GS_BASE, (uint64_t)&gs_word);
    wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)&kgs_word);
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v) : : "memory");
    check_hex("gs_base_read", v);
    __asm__ volatile("swapgs; mov %%gs:0, %0" : "=r"(v) : : "memory");
    check_hex("swapgs_gs_read", v);
    check_yes("swapgs_kernel_gs_base",
              rdmsr(MSR_KERNEL_GS_BASE) == (uint64_t)&gs_word);
    __asm__ volatile("swapgs" ::: "memory");
    check_yes("swapgs_back", rdmsr(MSR_GS_BASE) == (uint64_t)&gs_word);
    /* A selector load into FS sets the base from the descriptor (0). */
    __asm__ volatile("mov %0, %%fs" : : "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("fs_load_clears_base", rdmsr(MSR_FS_BASE));
    wrmsr(MSR_GS_BASE, 0);
    wrmsr(MSR_KERNEL_GS_BASE, 0);
}

/* Reading selectors: MOV from a segment register (common/checks.c) is
 * not privileged. PUSH and POP of CS/SS/DS/ES do not exist in 64-bit mode;
 * those of FS/GS do (PUSH writes at least 16 bits of an 8-byte slot), and
 * POP loads a selector, here from the LDT. */
static void check_selectors(void)
{
    check_selector_reads();
    check_hex("push_fs", PUSH_SEG(fs));
    check_hex("push_gs", PUSH_SEG(gs));
    check_hex("pop_fs_ldt", POP_SEG(fs, SEL_LDT_KDATA, SEL_KDATA));
    check_hex("pop_gs_ldt_rpl3", POP_SEG(gs, SEL_LDT_UDATA, SEL_KDATA));
}

/* The far pointer of far JMP/CALL m16:64 (FF /5 and FF /3 with REX.W). */
struct __attribute__((packed)) far_pointer64 {
    uint64_t offset;
    uint16_t selector;
};
struct far_pointer64 far_ptr;   /* used by name in asm below */

/* Loading segment registers: MOV (common/checks.c), then far pointers
 * m16:32 (a 4-byte offset, then the selector): LFS/LGS load a segment
 * register and a general register at once (the 32-bit destination is
 * zero-extended), LSS switches the stack. LDS/LES do not exist in 64-bit
 * mode. Not the REX.W form m16:64: Intel CPUs read an 8-byte offset there,
 * AMD CPUs and QEMU's TCG a 4-byte one (the selector then comes from the
 * offset's upper half), so the transcript would depend on the vendor
 * (README.md). */
static void check_segment_loads(void)
{
    check_selector_loads();
    CHECK_FAR_LOAD(lfs, fs, 0x11111111, SEL_LDT_UDATA);
    CHECK_FAR_LOAD(lgs, gs, 0x22222222, SEL_KDATA);
    check_lss();
}

/* LAR, LSL, VERR, VERW (common/checks.c) ask about each of these. In
 * IA-32e mode the system types differ from protected mode: LAR accepts the
 * 64-bit TSS (available or busy) and the 64-bit call gate; LSL the LDT and
 * the 64-bit TSS; VERR/VERW no system type. The upper half of a 16-byte
 * descriptor reads as type 0: refused by all four. LAR of the LDT
 * descriptor is left out: the SDM's table says no in IA-32e mode, QEMU's
 * TCG (7.2) says yes (README.md). */
static const struct probe probes[] = {
    { "kcode", SEL_KCODE },
    { "kdata", SEL_KDATA },
    { "kdata_rpl3", SEL_KDATA | 3 },
    { "ucode32", SEL_UCODE32 },
    { "udata", SEL_UDATA },
    { "ucode", SEL_UCODE },
    { "conforming", SEL_CONFORMING },
    { "conforming_rpl3", SEL_CONFORMING | 3 },
    { "small", SEL_SMALL },
    { "not_present", SEL_NOTPRESENT },
    { "exec_only", SEL_EXECONLY },
    { "ldt_desc", SEL_LDT },
    { "ldt_desc_upper", SEL_LDT_UPPER },
    { "tss", SEL_TSS },
    { "tss_upper", SEL_TSS_UPPER },
    { "call_gate", SEL_CALLGATE },
    { "null", SEL_NULL },
    { "beyond_limit", SEL_BEYOND },
    { "ldt_kdata", SEL_LDT_KDATA },
    { "ldt_udata", SEL_LDT_UDATA },
};

/* Far JMP/CALL/RET, IRETQ and INT n: transfers that load CS and check it
 * against the descriptor tables and the CPL (all at the same level here);
 * then the exceptions, delivered through the guest's own IDT. */
static void check_control_transfers(void)
{
    uint64_t v, ret_rip;

    /* JMP m16:64 (FF /5 with REX.W) */
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %1, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "rax", "memory");
    check_hex("far_jmp_indirect_cs", v);
    /* A conforming segment keeps the CPL: CS becomes 0x30 with RPL 0. */
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %1, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "1:\tmov %%cs, %0\n\t"
                     "leaq 2f(%%rip), %%rax\n\t"
                     "movq %%rax, far_ptr(%%rip)\n\t"
                     "movw %2, far_ptr+8(%%rip)\n\t"
                     "rex64 ljmp *far_ptr(%%rip)\n"
                     "2:" : "=r"(v) : "i"(SEL_CONFORMING), "i"(SEL_KCODE)
                     : "rax", "memory");
    check_hex("far_jmp_conforming_cs", v);
    /* A far RET to the same level: LRETQ pops RIP and CS (8 bytes each). */
    __asm__ volatile("pushq %1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "rax", "memory");
    check_hex("lretq_cs", v);

    /* CALL m16:64 pushes CS then RIP, 8 bytes each; LRETQ pops them. */
    far_pushed_cs = far_pushed_ip = far_callee_cs = 0;
    far_ptr = (struct far_pointer64){ (uint64_t)far_target, SEL_KCODE };
    __asm__ volatile("rex64 lcall *far_ptr(%%rip)\n"
                     "1:\tleaq 1b(%%rip), %0"
                     : "=r"(ret_rip) : : "rax", "memory");
    check_hex("far_call_pushed_cs", far_pushed_cs);
    check_yes("far_call_pushed_rip", far_pushed_ip == ret_rip);
    check_hex("far_call_callee_cs", far_callee_cs);
    /* LRETQ $16 pops two argument quadwords after CS:RIP. */
    uint64_t rsp_before, rsp_after;
    far_ptr = (struct far_pointer64){ (uint64_t)far_target_imm, SEL_KCODE };
    __asm__ volatile("mov %%rsp, %0\n\t"
                     "pushq $1\n\t"
                     "pushq $2\n\t"
                     "rex64 lcall *far_ptr(%%rip)\n\t"
                     "mov %%rsp, %1"
                     : "=&r"(rsp_before), "=&r"(rsp_after) : : "rax", "memory");
    check_yes("lret_imm16_pops_args", rsp_before == rsp_after);

    /* IRETQ to the same level pops RIP, CS, RFLAGS and, in 64-bit mode
     * always, RSP and SS; at ring 0 it loads IF from the frame (1 -> 0).
     * The frame's RSP is another stack: IRETQ really switches to it. */
    uint64_t ss_after;
    sti();
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "pushq %3\n\t"             /* SS */
                     "pushq %2\n\t"             /* RSP */
                     "pushfq\n\t"
                     "andq $~0x200, (%%rsp)\n\t"
                     "pushq %4\n\t"             /* CS */
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "iretq\n"
                     "1:\tmov %%rsp, %0\n\t"
                     "mov %%ss, %1\n\t"
                     "mov %%rbx, %%rsp"
                     : "=&r"(v), "=&r"(ss_after)
                     : "r"((uint64_t)lss_stack_top), "i"(SEL_KDATA), "i"(SEL_KCODE)
                     : "rax", "rbx", "memory");
    check_yes("iretq_pops_rsp", v == (uint64_t)lss_stack_top);
    check_hex("iretq_ss", ss_after);
    check_hex("iretq_loads_if", flags_if(read_flags()));
    cli();

    /* INT n with IF = 1: a trap gate keeps IF, an interrupt gate clears
     * it; both push SS:RSP (same level, no stack switch), RFLAGS as it was
     * (IF 1) and CS 0x08. */
    uint64_t rsp_at_int;
    sti();
    __asm__ volatile("mov %%rsp, %0; int $0x81" : "=&r"(rsp_at_int) : : "memory");
    cli();
    check_hex("int_trap_gate_if", soft_int.if_inside);
    check_hex("int_trap_gate_frame_cs", soft_int.frame_cs);
    check_hex("int_trap_gate_frame_ss", soft_int.frame_ss);
    check_yes("int_trap_gate_frame_rsp", soft_int.frame_rsp == rsp_at_int);
    /* The CPU aligns RSP down to 16 bytes before it pushes a 64-bit frame
     * (SDM Vol. 3A §6.14.2): with RSP 8 bytes off, the frame still ends on
     * a 16-byte boundary, and records the unaligned RSP. */
    uint64_t saved_rsp;
    __asm__ volatile("mov %%rsp, %1\n\t"
                     "and $~15, %%rsp\n\t"
                     "sub $8, %%rsp\n\t"    /* RSP = 8 mod 16 */
                     "mov %%rsp, %0\n\t"
                     "int $0x81\n\t"
                     "mov %1, %%rsp"
                     : "=&r"(rsp_at_int), "=&r"(saved_rsp) : : "memory");
    check_yes("int_frame_rsp_unaligned", soft_int.frame_rsp == rsp_at_int &&
                                         (rsp_at_int & 15) == 8);
    check_yes("int_frame_aligned_16", soft_int.frame_aligned);
    INT_WITH_IF(0x82);
    check_hex("int_intr_gate_if", soft_int.if_inside);
    check_hex("int_intr_gate_frame_if", soft_int.frame_if);
    check_yes("int_intr_gate_on_ist", soft_int.on_ist);
    /* Through a gate naming IST1: the CPU switches to the TSS's IST1 stack
     * even at the same privilege level. */
    __asm__ volatile("int $0x83" ::: "memory");
    check_yes("int_ist_gate_on_ist", soft_int.on_ist);

    check_int3();
    check_fault_sites();
    /* Gone from 64-bit mode: INTO (CE) and the direct far JMP (EA ptr16:32)
     * are #UD there. */
    EXPECT_FAULT(".byte 0xce");
    check_fault("into_invalid", &last_fault);
    EXPECT_FAULT(".byte 0xea, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00");
    check_fault("far_jmp_direct_invalid", &last_fault);
    check_operand_faults();
}

/* Written by entry.S: ring3_code (CS, SS, FS, DS at ring 3; CS, SS and
 * RFLAGS after SYSRETQ) and syscall_entry (RCX, R11, CS, SS, RFLAGS). */
uint64_t ring3_seen[7], syscall_seen[5];

/* Down to ring 3 with IRETQ and back with INT 0x80 through the DPL-3 trap
 * gate, with a SYSCALL/SYSRETQ round trip in between. Ring 3 runs with
 * RFLAGS = 0x202 (IF 1, IOPL 0) from the IRETQ frame, and nothing it does
 * before the SYSCALL changes a flag, so R11 and the frames show exactly
 * that value. */
static void check_ring3(void)
{
    fault_reset();
    ring3_run();
    check_hex("ring3_cs", ring3_seen[0] & 0xffff);
    check_hex("ring3_ss", ring3_seen[1] & 0xffff);
    check_hex("ring3_fs_after_iret", ring3_seen[2] & 0xffff);
    check_hex("ring3_ds", ring3_seen[3] & 0xffff);
    check_fault("ring3_cli", &ring3_faults[0]);
    check_fault("ring3_inb", &ring3_faults[1]);
    check_fault("ring3_swapgs", &ring3_faults[2]);
    check_fault("ring3_sysret", &ring3_faults[3]);
    /* SYSCALL: CS = STAR[47:32], SS = that + 8, RCX = the next RIP,
     * R11 = RFLAGS, then RFLAGS &= ~FMASK (IF 0 inside). */
    check_hex("syscall_cs", syscall_seen[2] & 0xffff);
    check_hex("syscall_ss", syscall_seen[3] & 0xffff);
    check_yes("syscall_rcx", syscall_seen[0] == (uint64_t)ring3_after_syscall);
    check_hex("syscall_r11", syscall_seen[1]);
    check_hex("syscall_rflags", syscall_seen[4]);
    /* SYSRETQ: CS = STAR[63:48] + 16 | 3, SS = STAR[63:48] + 8 | 3,
     * RFLAGS from R11. */
    check_hex("sysret_cs", ring3_seen[4] & 0xffff);
    check_hex("sysret_ss", ring3_seen[5] & 0xffff);
    check_hex("sysret_rflags", ring3_seen[6]);
    /* INT 0x80: to ring 0 on RSP0 with SS null (RPL 0), pushing ring 3's
     * SS:RSP and RFLAGS. */
    check_hex("int80_frame_cs", int80_frame.cs);
    check_hex("int80_frame_ss", int80_frame.ss);
    check_hex("int80_frame_rflags", int80_frame.rflags);
    check_yes("int80_frame_rsp_is_ring3_stack",
              int80_frame.rsp == (uint64_t)ring3_stack_top);
    check_yes("int80_frame_on_tss_rsp0", int80_frame.on_tss_stack);
    check_hex("int80_ss_inside", int80_frame.ss_inside);
}

/* ======================================================================
 * kmain
 * ====================================================================== */

void kmain(const struct multiboot_info *mbi) __attribute__((noreturn));
void kmain(const struct multiboot_info *mbi)
{
    uint64_t initial_rflags = read_flags();

    uart_init();
    put_str("guest64: start\n");
    check_entry(mbi, initial_rflags);

    setup_descriptor_tables();
    pic_init();
    pit_init();

    check_descriptor_registers();
    check_control_registers();
    check_segment_bases();
    check_flags();
    check_interrupts();
    check_selectors();
    check_segment_loads();
    check_descriptor_queries(probes, sizeof(probes) / sizeof(probes[0]));
    check_control_transfers();
    check_port_io();
    check_ring3();

    put_str("guest64: done\n");
    guest_exit(0);
}
