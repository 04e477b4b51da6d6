/* samples/guest32/guest32.c — a small 32-bit kernel that checks, one line
 * each, what the x86 instructions a monitor must virtualize return at
 * ring 0.
 *
 * It boots the Multiboot way (on `qemu-system-i386 -kernel` or under
 * `popek boot`), sets up its own GDT, LDT, TSS and IDT, the PIC and the
 * PIT, and prints `check NAME: VALUE` lines on the UART. Every value is
 * fixed by the architecture and by what the guest itself loaded, never by
 * timing, so the transcript from QEMU (real ring 0) is the reference a
 * monitor's transcript must equal. README.md lists every check, what it
 * shows, and which lines come out wrong when the guest runs deprivileged
 * without patching.
 *
 * One function per family of instructions; kmain() at the end calls them in
 * order. The families that read the same in 64-bit mode, and the UART,
 * PIC, PIT and exception record, are in ../common/ (shared with guest64);
 * this file keeps what is 32-bit: the tables, the interrupt frame, far
 * transfers, LDS/LES, INTO, the ring-3 trip. SDM references are to the
 * Intel SDM (Vol. 2 for instructions, Vol. 3A for descriptors, interrupts
 * and the TSS). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"
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
 * 0x00120000): the GDT first, so SGDT shows base 0x120000. The CPU writes
 * to the GDT (LTR sets the TSS busy bit), so it lives on a data page. */
struct tables {
    seg_desc gdt[GDT_ENTRIES];
    seg_desc ldt[LDT_ENTRIES];
    tss32 tss;
    gate_desc idt[256];
};
__attribute__((section(".data.tables"), aligned(4096)))
struct tables tables;

/* From entry.S. */
extern const uint8_t isr_stubs[];       /* 256 stubs of 16 bytes */
extern uint8_t boot_stack_top[], ring0_stack_top[], ring3_stack_top[],
    lss_stack_top[];
extern void far_target(void), far_target_imm(void), ring3_code(void);
extern uint32_t ring3_run(void);
extern void ring3_leave(void) __attribute__((noreturn));

static void set_gate(gate_desc *g, uint32_t offset, uint16_t selector,
                     uint8_t access)
{
    g->offset_lo = offset & 0xffff;
    g->selector = selector;
    g->zero_or_params = 0;
    g->access = access;
    g->offset_hi = offset >> 16;
}

/* ======================================================================
 * Exceptions and interrupts
 * ====================================================================== */

/* What isr_common (entry.S) leaves on the stack. */
struct trap_frame {
    uint32_t es, ds;
    uint32_t edi, esi, ebp, esp_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error;
    uint32_t eip, cs, eflags;   /* pushed by the CPU */
    uint32_t esp3, ss3;         /* pushed only when coming from ring 3 */
};

/* Copies of last_fault made by ring3_code in entry.S (common/faults.h). */
struct fault ring3_faults[2];

/* Software interrupts 0x81/0x82: what the handler saw. */
static volatile struct {
    uint32_t if_inside, frame_cs, frame_if;
} soft_int;

/* int $0x80 from ring 3: the frame the CPU pushed on the ring-0 stack. */
static struct {
    uint32_t cs, ss, esp;
    bool on_tss_stack;
} syscall_frame;

/* Called by isr_common for every vector. */
void trap_entry(struct trap_frame *f);
void trap_entry(struct trap_frame *f)
{
    uint32_t v = f->vector;

    if (v == VEC_SOFT_TRAP || v == VEC_SOFT_INTR) {
        soft_int.if_inside = flags_if(read_flags());
        soft_int.frame_cs = f->cs;
        soft_int.frame_if = flags_if(f->eflags);
        return;
    }
    if (v == VEC_SYSCALL) {
        syscall_frame.cs = f->cs;
        syscall_frame.ss = f->ss3;
        syscall_frame.esp = f->esp3;
        /* The frame ends exactly at the TSS's esp0. */
        syscall_frame.on_tss_stack = (uint8_t *)(&f->ss3 + 1) == ring0_stack_top;
        ring3_leave();
    }
    trap_default("guest32", v, f->error, &f->eip, f->cs);
}

/* ======================================================================
 * Setup: GDT, segment registers, LDT, TSS, IDT
 * ====================================================================== */

static void setup_descriptor_tables(void)
{
    const uint8_t kcode = ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XR;
    const uint8_t kdata = ACC_P | ACC_DPL(0) | ACC_S | TYPE_DATA_RW;
    seg_desc *gdt = tables.gdt;

    set_segment(&gdt[SEL_KCODE >> 3], 0, 0xfffff, kcode, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_KDATA >> 3], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UCODE >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_CODE_XR, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_UDATA >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_CONFORMING >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_XRC, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_SMALL >> 3], 0, 0xff, kdata, FLG_DB);
    set_segment(&gdt[SEL_NOTPRESENT >> 3], 0, 0xfffff,
                ACC_DPL(0) | ACC_S | TYPE_DATA_RW, FLG_G | FLG_DB);
    set_segment(&gdt[SEL_LDT >> 3], (uint32_t)tables.ldt,
                sizeof(tables.ldt) - 1, ACC_P | TYPE_LDT, 0);
    set_segment(&gdt[SEL_TSS >> 3], (uint32_t)&tables.tss,
                sizeof(tables.tss) - 1, ACC_P | TYPE_TSS32, 0);
    set_gate((gate_desc *)&gdt[SEL_CALLGATE >> 3], (uint32_t)far_target,
             SEL_KCODE, ACC_P | ACC_DPL(0) | TYPE_CALL32);
    set_segment(&gdt[SEL_EXECONLY >> 3], 0, 0xfffff,
                ACC_P | ACC_DPL(0) | ACC_S | TYPE_CODE_X, FLG_G | FLG_DB);

    set_segment(&tables.ldt[0], 0, 0xfffff, kdata, FLG_G | FLG_DB);
    set_segment(&tables.ldt[1], 0, 0xfff,
                ACC_P | ACC_DPL(3) | ACC_S | TYPE_DATA_RW, FLG_DB);

    /* ss0:esp0 is the stack the CPU switches to on an interrupt from ring 3.
     * An I/O map base past the limit means no I/O permission bitmap. */
    tables.tss.ss0 = SEL_KDATA;
    tables.tss.esp0 = (uint32_t)ring0_stack_top;
    tables.tss.iomap_base = sizeof(tables.tss);

    /* Every vector gets an interrupt gate to its stub, except the software
     * interrupts: 0x80 is a DPL-3 trap gate (ring 3 may call it), 0x81 a
     * trap gate (IF stays as it was), 0x82 an interrupt gate (IF cleared). */
    for (unsigned v = 0; v < 256; v++)
        set_gate(&tables.idt[v], (uint32_t)(isr_stubs + 16 * v), SEL_KCODE,
                 ACC_P | ACC_DPL(0) | TYPE_INTR32);
    tables.idt[VEC_SYSCALL].access = ACC_P | ACC_DPL(3) | TYPE_TRAP32;
    tables.idt[VEC_SOFT_TRAP].access = ACC_P | ACC_DPL(0) | TYPE_TRAP32;

    /* LGDT, then a far JMP to reload CS from the new table, then MOV to
     * every data segment register; LIDT; LLDT and LTR. */
    table_reg gdtr = { sizeof(tables.gdt) - 1, (uint32_t)tables.gdt };
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $%c1, $1f\n"
                     "1:" : : "m"(gdtr), "i"(SEL_KCODE) : "memory");
    load_data_segments(SEL_KDATA);
    lidt(tables.idt, sizeof(tables.idt));
    lldt(SEL_LDT);
    ltr(SEL_TSS);
}

/* ======================================================================
 * Checks, one function per family
 * ====================================================================== */

/* Multiboot: the loader's handshake (EAX), then what it says about memory
 * and the flags we were entered with (common/checks.c). */
static void check_multiboot(uint32_t magic, const struct multiboot_info *mbi,
                            uint32_t initial_eflags)
{
    check_hex("multiboot_magic", magic);
    if (magic != MB_BOOT_MAGIC)
        return;
    check_boot_info(mbi, initial_eflags);
}

/* Control registers, debug registers, MSRs, cache/TLB instructions. All
 * privileged except SMSW, which reads CR0[15:0] without a trap. */
static void check_control_registers(void)
{
    uint32_t cr0 = READ_CR(0);
    check_hex("cr0_initial", cr0);          /* Multiboot leaves PE; ET is 1 */

    uint16_t msw_r16;
    uint32_t msw_r32 = 0xffffffff;
    __asm__ volatile("smsw %0" : "=r"(msw_r16));
    __asm__ volatile("smsw %0" : "+r"(msw_r32));
    check_hex("smsw_m16", smsw_m16());
    check_hex("smsw_r16", msw_r16);
    /* SMSW r32 outside 64-bit mode: bits 31:16 are undefined (SDM). */
    check_hex("smsw_r32_low16", msw_r32 & 0xffff);
    check_cr0_ts(cr0);

    /* CR2 and CR3 take what is written (CR3 holds a page-directory base;
     * paging stays off, so nothing reads it). CR4.PSE is harmless. */
    WRITE_CR(2, 0x12345000);
    check_hex("cr2", READ_CR(2));
    WRITE_CR(3, 0x00400000);
    check_hex("cr3", READ_CR(3));
    WRITE_CR(3, 0);
    uint32_t cr4 = READ_CR(4);
    check_hex("cr4_initial", cr4);
    WRITE_CR(4, cr4 | CR4_PSE);
    check_hex("cr4_pse", READ_CR(4));
    WRITE_CR(4, cr4);

    check_debug_registers();
    check_sysenter_msrs();
    check_cache_instructions(&tables);
}

/* Reading selectors: MOV from a segment register (common/checks.c) and
 * PUSH of one are not privileged; POP DS loads a selector, here from the
 * LDT, and DS shows it. */
static void check_selectors(void)
{
    check_selector_reads();
    check_hex("push_cs", PUSH_SEG(cs));
    check_hex("push_ss", PUSH_SEG(ss));
    check_hex("push_ds", PUSH_SEG(ds));
    check_hex("pop_ds_ldt", POP_SEG(ds, SEL_LDT_KDATA, SEL_KDATA));
}

/* Loading segment registers: MOV (common/checks.c), then the far pointers
 * in memory (offset, then selector): LDS/LES/LFS/LGS load a segment
 * register and a general register at once, LSS switches the stack. */
static void check_segment_loads(void)
{
    check_selector_loads();
    CHECK_FAR_LOAD(lds, ds, 0x11111111, SEL_LDT_KDATA);
    CHECK_FAR_LOAD(les, es, 0x22222222, SEL_LDT_KDATA);
    CHECK_FAR_LOAD(lfs, fs, 0x33333333, SEL_LDT_UDATA);
    CHECK_FAR_LOAD(lgs, gs, 0x44444444, SEL_KDATA);
    check_lss();
}

/* LAR, LSL, VERR, VERW (common/checks.c) ask about each of these. In
 * protected mode LAR accepts the LDT, the TSS and call gates; LSL the LDT
 * and the TSS; VERR/VERW no system type. */
static const struct probe probes[] = {
    { "kcode", SEL_KCODE },
    { "kdata", SEL_KDATA },
    { "kdata_rpl3", SEL_KDATA | 3 },
    { "ucode", SEL_UCODE },
    { "udata", SEL_UDATA },
    { "conforming", SEL_CONFORMING },
    { "conforming_rpl3", SEL_CONFORMING | 3 },
    { "small", SEL_SMALL },
    { "not_present", SEL_NOTPRESENT },
    { "ldt_desc", SEL_LDT },
    { "tss", SEL_TSS },
    { "call_gate", SEL_CALLGATE },
    { "exec_only", SEL_EXECONLY },
    { "null", SEL_NULL },
    { "beyond_limit", SEL_BEYOND },
    { "ldt_kdata", SEL_LDT_KDATA },
    { "ldt_udata", SEL_LDT_UDATA },
};

/* Far JMP/CALL/RET, IRET and INT n: transfers that load CS and check it
 * against the descriptor tables and the CPL (all at the same level here);
 * then the exceptions, delivered through the guest's own IDT. */
static void check_control_transfers(void)
{
    uint32_t v, ret_eip;

    __asm__ volatile("ljmp $%c1, $1f\n1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE));
    check_hex("far_jmp_direct_cs", v);
    __asm__ volatile("movl $1f, far_ptr32\n\t"
                     "movw %1, far_ptr32+4\n\t"
                     "ljmp *far_ptr32\n"
                     "1:\tmov %%cs, %0" : "=r"(v) : "i"(SEL_KCODE) : "memory");
    check_hex("far_jmp_indirect_cs", v);
    /* A conforming segment keeps the CPL: CS becomes 0x28 with RPL 0. */
    __asm__ volatile("ljmp $%c1, $1f\n1:\tmov %%cs, %0\n\tljmp $%c2, $2f\n2:"
                     : "=r"(v) : "i"(SEL_CONFORMING), "i"(SEL_KCODE));
    check_hex("far_jmp_conforming_cs", v);

    /* A far CALL pushes CS then EIP; LRET pops them. */
    far_pushed_cs = far_pushed_ip = far_callee_cs = 0;
    __asm__ volatile("lcall $%c2, $far_target\n1:\tmovl $1b, %0"
                     : "=r"(ret_eip), "=m"(far_pushed_cs) : "i"(SEL_KCODE)
                     : "eax", "memory");
    check_hex("far_call_pushed_cs", far_pushed_cs & 0xffff);
    check_yes("far_call_pushed_eip", far_pushed_ip == ret_eip);
    far_ptr32 = (struct far_pointer32){ (uint32_t)far_target, SEL_KCODE };
    far_pushed_cs = 0;
    __asm__ volatile("lcall *far_ptr32" : : : "eax", "memory");
    check_hex("far_call_indirect_pushed_cs", far_pushed_cs & 0xffff);
    /* LRET $8 pops two argument dwords after CS:EIP. */
    uint32_t esp_before, esp_after;
    __asm__ volatile("mov %%esp, %0\n\t"
                     "pushl $1\n\t"
                     "pushl $2\n\t"
                     "lcall $%c2, $far_target_imm\n\t"
                     "mov %%esp, %1"
                     : "=&r"(esp_before), "=&r"(esp_after) : "i"(SEL_KCODE)
                     : "eax", "memory");
    check_yes("lret_imm16_pops_args", esp_before == esp_after);
    /* Through the call gate: the offset in the instruction is ignored, the
     * gate gives CS:EIP = 0x08:far_target. */
    far_pushed_cs = far_callee_cs = 0;
    __asm__ volatile("lcall $%c0, $0" : : "i"(SEL_CALLGATE) : "eax", "memory");
    check_hex("call_gate_pushed_cs", far_pushed_cs & 0xffff);
    check_hex("call_gate_callee_cs", far_callee_cs);

    /* IRET at the same level pops EIP, CS, EFLAGS (not SS:ESP), and at
     * ring 0 it loads IF from the frame: here IF 1 -> 0. */
    sti();
    __asm__ volatile("pushfl\n\t"
                     "andl $~0x200, (%%esp)\n\t"
                     "push %%cs\n\t"
                     "pushl $1f\n\t"
                     "iret\n"
                     "1:" ::: "memory");
    check_word("iret_same_level", "reached");
    check_hex("iret_loads_if", flags_if(read_flags()));
    cli();

    /* INT n with IF = 1: a trap gate keeps IF, an interrupt gate clears
     * it; both push the flags as they were (IF 1) and CS 0x08. */
    INT_WITH_IF(0x81);
    check_hex("int_trap_gate_if", soft_int.if_inside);
    check_hex("int_trap_gate_frame_cs", soft_int.frame_cs);
    INT_WITH_IF(0x82);
    check_hex("int_intr_gate_if", soft_int.if_inside);
    check_hex("int_intr_gate_frame_if", soft_int.frame_if);

    /* INT3 and INTO are traps: the frame's EIP is the next instruction. */
    check_int3();
    fault_reset();
    __asm__ volatile("movl $0x7fffffff, %%eax\n\t"
                     "addl $1, %%eax\n\t"           /* OF = 1 */
                     "into\n"
                     "1:\tmovl $1b, %0" : "=r"(ret_eip) : : "eax", "cc", "memory");
    check_fault("into_of1", &last_fault);
    check_yes("into_eip_after", last_fault.ip == ret_eip);
    fault_reset();
    __asm__ volatile("xorl %%eax, %%eax; into" ::: "eax", "cc", "memory");
    check_fault("into_of0", &last_fault);

    check_fault_sites();
    check_operand_faults();
}

/* Written by ring3_code in entry.S. */
uint32_t ring3_cs, ring3_ss, ring3_fs;

/* Down to ring 3 with IRET and back with INT 0x80 through the DPL-3 trap
 * gate: the CPU switches to the TSS's ss0:esp0 stack and pushes the ring-3
 * SS:ESP. At ring 3 the RPL of CS and SS is 3, CLI and IN fault (IOPL 0),
 * and IRET has zeroed FS, which held a ring-0 selector. */
static void check_ring3(void)
{
    fault_reset();
    ring3_run();
    check_hex("ring3_cs", ring3_cs & 0xffff);
    check_hex("ring3_ss", ring3_ss & 0xffff);
    check_hex("ring3_fs_after_iret", ring3_fs & 0xffff);
    check_fault("ring3_cli", &ring3_faults[0]);
    check_fault("ring3_inb", &ring3_faults[1]);
    check_hex("int80_frame_cs", syscall_frame.cs);
    check_hex("int80_frame_ss", syscall_frame.ss);
    check_yes("int80_frame_esp_is_ring3_stack",
              syscall_frame.esp == (uint32_t)ring3_stack_top);
    check_yes("int80_frame_on_tss_esp0", syscall_frame.on_tss_stack);
}

/* ======================================================================
 * kmain
 * ====================================================================== */

void kmain(uint32_t magic, const struct multiboot_info *mbi) __attribute__((noreturn));
void kmain(uint32_t magic, const struct multiboot_info *mbi)
{
    uint32_t initial_eflags = read_flags();

    uart_init();            /* natively, the first OUT ends the run: SIGSEGV */
    put_str("guest32: start\n");
    check_multiboot(magic, mbi, initial_eflags);

    setup_descriptor_tables();
    pic_init();
    pit_init();

    check_descriptor_registers();
    check_control_registers();
    check_flags();
    check_interrupts();
    check_selectors();
    check_segment_loads();
    check_descriptor_queries(probes, sizeof(probes) / sizeof(probes[0]));
    check_control_transfers();
    check_port_io();
    check_ring3();

    put_str("guest32: done\n");
    guest_exit(0);
}
