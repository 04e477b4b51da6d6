/* samples/common/checks.c — the families of checks that read the same in
 * both sample guests (checks.h). SDM references are to the Intel SDM
 * (Vol. 2 for instructions, Vol. 3A for descriptors and interrupts).
 *
 * `layout.h` is the guest's own (guest32/ or guest64/, on the include path
 * by the Makefile): the selectors differ between the two GDTs, the checks
 * do not. */
#include "checks.h"

#include "console.h"
#include "faults.h"
#include "layout.h"
#include "timer.h"
#include "x86.h"

extern uint8_t lss_stack_top[];         /* from entry.S */

struct far_pointer32 far_ptr32;
uintptr_t far_pushed_cs, far_pushed_ip, far_callee_cs;

/* ======================================================================
 * Boot and system registers
 * ====================================================================== */

/* The loader's memory sizes: KiB below 1 MiB and above 1 MiB; QEMU -m 64
 * gives 640 (0x280) and 64 MiB - 1 MiB = 64512 (0xfc00). The Multiboot
 * spec enters with IF 0; IOPL is 0 after reset. */
void check_boot_info(const struct multiboot_info *mbi, uintptr_t initial_flags)
{
    check_yes("multiboot_has_mem", mbi->flags & MB_INFO_MEM);
    check_hex("multiboot_mem_lower", mbi->mem_lower);
    check_hex("multiboot_mem_upper", mbi->mem_upper);
    check_hex("initial_if", flags_if(initial_flags));
    check_hex("initial_iopl", flags_iopl(initial_flags));
}

/* SGDT/SIDT/SLDT/STR read descriptor-table registers. They are not
 * privileged: at ring 3 on a CPU with UMIP, Linux answers them with its
 * own dummy values and the monitor never sees them. SGDT/SIDT store the
 * whole base (4 bytes, 8 in 64-bit mode), so the all-ones preloaded is
 * gone; the register forms of SLDT/STR zero-extend the selector to the
 * whole register (P6 and later). */
void check_descriptor_registers(void)
{
    table_reg gdtr = { 0xffff, UINTPTR_MAX }, idtr = { 0xffff, UINTPTR_MAX };
    uint16_t ldtr_m16 = 0, tr_m16 = 0;
    uintptr_t ldtr_r = UINTPTR_MAX, tr_r = UINTPTR_MAX;

    __asm__ volatile("sgdt %0" : "+m"(gdtr));
    __asm__ volatile("sidt %0" : "+m"(idtr));
    __asm__ volatile("sldt %0" : "=m"(ldtr_m16));
    __asm__ volatile("sldt %0" : "+r"(ldtr_r));
    __asm__ volatile("str %0" : "=m"(tr_m16));
    __asm__ volatile("str %0" : "+r"(tr_r));
    check_hex("sgdt_limit", gdtr.limit);
    check_hex("sgdt_base", gdtr.base);
    check_hex("sidt_limit", idtr.limit);
    check_hex("sidt_base", idtr.base);
    check_hex("sldt_m16", ldtr_m16);
    check_hex("sldt_r" REG_BITS, ldtr_r);
    check_hex("str_m16", tr_m16);
    check_hex("str_r" REG_BITS, tr_r);
}

/* CR0.TS three ways: LMSW loads PE, MP, EM and TS, CLTS clears TS, MOV to
 * CR0 sets it; SMSW and MOV from CR0 read it back. LMSW cannot clear PE
 * (it can only set it). CR0 is `cr0` again at the end. */
void check_cr0_ts(uintptr_t cr0)
{
    lmsw((uint16_t)(cr0 | CR0_TS));
    check_hex("lmsw_ts_smsw", smsw_m16());
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_smsw", smsw_m16());
    WRITE_CR(0, cr0 | CR0_TS);
    check_hex("mov_cr0_ts", READ_CR(0));
    __asm__ volatile("clts" ::: "memory");
    check_hex("clts_cr0", READ_CR(0));
    lmsw(0);
    check_hex("lmsw_keeps_pe", READ_CR(0));
    WRITE_CR(0, cr0);
}

/* DR0-DR3 hold addresses (as wide as the mode); DR7 is 0x400 after reset
 * (bit 10 reads as 1), so no breakpoint is armed by writing DR0-DR3. */
void check_debug_registers(void)
{
    check_hex("dr7_initial", READ_DR(7));
    WRITE_DR(0, 0x00101000);
    WRITE_DR(1, 0x00102000);
    WRITE_DR(2, 0x00103000);
    WRITE_DR(3, 0x00104000);
    check_hex("dr0", READ_DR(0));
    check_hex("dr1", READ_DR(1));
    check_hex("dr2", READ_DR(2));
    check_hex("dr3", READ_DR(3));
}

/* Only architectural MSRs: the SYSENTER trio takes what is written;
 * IA32_PAT resets to 0x0007040600070406 (SDM Vol. 3A §12.12.4). */
void check_sysenter_msrs(void)
{
    wrmsr(MSR_SYSENTER_CS, SEL_KCODE);
    wrmsr(MSR_SYSENTER_ESP, 0x00200000);
    wrmsr(MSR_SYSENTER_EIP, 0x00201000);
    check_hex("msr_sysenter_cs", rdmsr(MSR_SYSENTER_CS));
    check_hex("msr_sysenter_esp", rdmsr(MSR_SYSENTER_ESP));
    check_hex("msr_sysenter_eip", rdmsr(MSR_SYSENTER_EIP));
    check_hex("msr_pat", rdmsr(MSR_PAT));
}

/* INVLPG and WBINVD: privileged, nothing to read back. */
void check_cache_instructions(const void *page)
{
    __asm__ volatile("invlpg (%0)" : : "r"(page) : "memory");
    check_word("invlpg", "done");
    __asm__ volatile("wbinvd" ::: "memory");
    check_word("wbinvd", "done");
}

/* ======================================================================
 * Flags and interrupts
 * ====================================================================== */

/* PUSHF/POPF and IF, IOPL. At ring 0 POPF loads IF and IOPL; at ring 3
 * (CPL > IOPL) it silently keeps both, and PUSHF shows the real IF (1).
 * The PIC masks every IRQ here, so IF = 1 lets nothing in. */
void check_flags(void)
{
    cli();
    uintptr_t f = read_flags();
    check_hex("pushf_after_cli_if", flags_if(f));
    check_hex("pushf_iopl", flags_iopl(f));
    sti();
    check_hex("pushf_after_sti_if", flags_if(read_flags()));
    cli();

    write_flags(f | EFLAGS_IF);
    check_hex("popf_sets_if", flags_if(read_flags()));
    write_flags(f & ~(uintptr_t)EFLAGS_IF);
    check_hex("popf_clears_if", flags_if(read_flags()));
    write_flags(f | EFLAGS_IOPL);
    check_hex("popf_iopl3", flags_iopl(read_flags()));
    write_flags(f & ~(uintptr_t)EFLAGS_IOPL);
    check_hex("popf_iopl0", flags_iopl(read_flags()));
}

/* The timer interrupt, HLT, and the irqsave/irqrestore idiom: with the
 * PIT running, `pushf; cli; ...; popf` must hold the timer off and then let
 * it in. Deprivileged without patching, the POPF cannot restore the
 * virtual IF (CPL > IOPL: POPF keeps IF), so no interrupt comes: `no`.
 * Every wait is bounded and measured on the PIT; nothing halts with IF 0. */
void check_interrupts(void)
{
    outb(PIC1_DATA, 0xfe);  /* unmask IRQ 0 only */

    uint32_t t = timer_ticks;
    sti();
    check_yes("timer_irq", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    /* STI holds interrupts off for one more instruction, so `sti; hlt`
     * cannot lose a wake-up between the two. */
    t = timer_ticks;
    __asm__ volatile("sti; hlt; cli" ::: "memory");
    check_yes("hlt_wakes", timer_ticks != t);

    sti();
    uintptr_t saved = irq_save();               /* pushf; cli */
    t = timer_ticks;
    pit_wait(PIT_MS(3), NULL, 0);               /* three timer periods */
    check_yes("irqsave_holds_irq", timer_ticks == t);
    irq_restore(saved);                         /* popf: IF = 1 again */
    check_yes("irqrestore_delivers", pit_wait(PIT_MS(50), &timer_ticks, t));
    cli();

    outb(PIC1_DATA, 0xff);
}

/* ======================================================================
 * Segment registers
 * ====================================================================== */

/* MOV from a segment register is not privileged, and the RPL of CS and SS
 * is the CPL: 0 here, 3 in any ring-3 process. */
void check_selector_reads(void)
{
    check_hex("mov_from_cs", READ_SEG(cs));
    check_hex("mov_from_ss", READ_SEG(ss));
    check_hex("mov_from_ds", READ_SEG(ds));
    check_hex("mov_from_es", READ_SEG(es));
}

/* Loads `sel` into DS (or SS), recording any fault, then SEL_KDATA. */
#define LOAD_SEG_EXPECT(sreg, sel) do {                                     \
        EXPECT_FAULT("mov %0, %%" #sreg, "r"((uint32_t)(sel)));             \
        __asm__ volatile("mov %0, %%" #sreg                                 \
                         : : "r"((uint32_t)SEL_KDATA) : "memory");          \
    } while (0)

/* Loading segment registers: the CPU checks the descriptor when the
 * selector is loaded (SDM Vol. 2, MOV): past the table limit or not a
 * readable segment -> #GP(selector), not present -> #NP(selector), SS must
 * be a writable data segment with RPL = DPL = CPL. A null SS is #GP(0) in
 * 32-bit mode, allowed in 64-bit mode at CPL 0 (the CPU itself loads one
 * on every interrupt that changes privilege). The error code is the
 * selector with the RPL bits cleared. */
void check_selector_loads(void)
{
    uintptr_t v;

    __asm__ volatile("mov %1, %%ds; mov %%ds, %0; mov %2, %%ds"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_KDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_ds_ldt", v);
    __asm__ volatile("mov %1, %%fs; mov %%fs, %0; mov %2, %%fs"
                     : "=r"(v) : "r"((uint32_t)SEL_LDT_UDATA),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_fs_ldt_rpl3", v);
    /* A null selector may be loaded into a data segment register (using
     * it would fault). GS, not DS: deprivileged without patching, the load
     * of null succeeds natively and the reload of 0x10 is emulated, so the
     * real register would stay null; nothing here uses GS. */
    __asm__ volatile("mov %1, %%gs; mov %%gs, %0; mov %2, %%gs"
                     : "=r"(v) : "r"((uint32_t)SEL_NULL),
                       "r"((uint32_t)SEL_KDATA) : "memory");
    check_hex("mov_gs_null", v);

    LOAD_SEG_EXPECT(ds, SEL_BEYOND);
    check_fault("mov_ds_beyond_limit", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_NOTPRESENT);
    check_fault("mov_ds_not_present", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_EXECONLY);      /* code that cannot be read */
    check_fault("mov_ds_exec_only", &last_fault);
    LOAD_SEG_EXPECT(ds, SEL_TSS);           /* a system descriptor */
    check_fault("mov_ds_tss", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_KDATA | 3);     /* RPL 3 != CPL 0 */
    check_fault("mov_ss_rpl3", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_NULL);
    check_fault("mov_ss_null", &last_fault);
    LOAD_SEG_EXPECT(ss, SEL_KDATA);
    check_fault("mov_ss_good", &last_fault);
}

/* LSS switches the stack: to the LDT's ring-0 data segment and a small
 * stack (loading ESP, zero-extended in 64-bit mode), then back. */
void check_lss(void)
{
    uintptr_t sp, saved, v;

    far_ptr32 = (struct far_pointer32){ (uint32_t)(uintptr_t)lss_stack_top,
                                        SEL_LDT_KDATA };
    __asm__ volatile("mov %%" REG_PREFIX "sp, %2\n\t"
                     "lss %3, %%esp\n\t"
                     "mov %%" REG_PREFIX "sp, %0\n\t"
                     "mov %%ss, %1\n\t"
                     "mov %4, %%ss\n\t"
                     "mov %2, %%" REG_PREFIX "sp"
                     : "=&r"(sp), "=&r"(v), "=&r"(saved)
                     : "m"(far_ptr32), "r"((uint32_t)SEL_KDATA)
                     : "memory");
    check_hex("lss_sel", v);
    check_yes("lss_" REG_PREFIX "sp", sp == (uintptr_t)lss_stack_top);
}

/* ======================================================================
 * LAR, LSL, VERR, VERW
 * ====================================================================== */

/* They ask about a selector without loading it. They set ZF when the
 * descriptor is visible from the current CPL and the selector's RPL
 * (DPL >= both, except conforming code) and of a type the instruction
 * accepts; with ZF = 0 the destination is left alone (the preloaded
 * 0x5a5a... shows it was). LAR's result is the descriptor's second dword
 * masked to 0x00F0FF00 (bits 19:16 are undefined); LSL's is the limit in
 * bytes. The P bit is not checked by any of the four (SDM Vol. 2,
 * LAR/LSL/VERR/VERW). Which system types each accepts differs between the
 * modes: each guest's table of probes says. */
#define UNTOUCHED ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

static void check_result(const char *prefix, const char *name, bool zf,
                         uintptr_t v, uintptr_t mask)
{
    check_begin(prefix, name);
    if (zf)
        put_hex(v & mask);
    else
        put_str(v == UNTOUCHED ? "zf=0" : "zf=0-dest-written");
    uart_putc('\n');
}

void check_descriptor_queries(const struct probe *probes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uintptr_t v = UNTOUCHED;
        bool zf;
#ifdef __x86_64__
        /* LAR of the LDT descriptor is left out in IA-32e mode: the SDM's
         * table says no, QEMU's TCG (7.2) says yes (guest64/README.md). */
        if (probes[i].sel == SEL_LDT)
            continue;
#endif
        __asm__ volatile("lar %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lar_", probes[i].name, zf, v, 0x00f0ff00);
    }
    for (size_t i = 0; i < n; i++) {
        uintptr_t v = UNTOUCHED;
        bool zf;
        __asm__ volatile("lsl %w2, %0" : "+r"(v), "=@ccz"(zf) : "r"(probes[i].sel));
        check_result("lsl_", probes[i].name, zf, v, UINTPTR_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        bool zf;
        __asm__ volatile("verr %w1" : "=@ccz"(zf) : "r"(probes[i].sel));
        check_begin("verr_", probes[i].name);
        put_str(zf ? "yes\n" : "no\n");
    }
    for (size_t i = 0; i < n; i++) {
        bool zf;
        __asm__ volatile("verw %w1" : "=@ccz"(zf) : "r"(probes[i].sel));
        check_begin("verw_", probes[i].name);
        put_str(zf ? "yes\n" : "no\n");
    }
}

/* ======================================================================
 * Exceptions, delivered through the guest's own IDT
 * ====================================================================== */

/* INT3 is a trap: the frame's EIP (RIP) is the next instruction. */
void check_int3(void)
{
    uintptr_t after;
    fault_reset();
    __asm__ volatile("int3\n1:\tmov $1b, %0" : "=r"(after) : : "memory");
    check_fault("int3", &last_fault);
    check_yes("int3_" REG_PREFIX "ip_after", last_fault.ip == after);
}

/* Faults: the frame's EIP (RIP) is the faulting instruction itself. */
void check_fault_sites(void)
{
    uintptr_t site;
    fault_reset();
    __asm__ volatile("mov $1f, %0\n\t"
                     ASM_RECOVER("2f")
                     "1:\tdivl %%ecx\n"
                     "2:" : "=&r"(site) : "a"(1), "d"(0), "c"(0) : "cc", "memory");
    check_fault("div_by_zero", &last_fault);
    check_yes("div_by_zero_" REG_PREFIX "ip_at_div", last_fault.ip == site);
    fault_reset();
    __asm__ volatile("mov $1f, %0\n\t"
                     ASM_RECOVER("2f")
                     "1:\tud2\n"
                     "2:" : "=&r"(site) : : "memory");
    check_fault("ud2", &last_fault);
    check_yes("ud2_" REG_PREFIX "ip_at_ud2", last_fault.ip == site);
}

/* Privileged instructions can still fault at ring 0 when their operand
 * is wrong: LLDT of a selector that is not an LDT, LTR of a TSS that is
 * already busy (ours, since the LTR at setup). */
void check_operand_faults(void)
{
    EXPECT_FAULT("lldt %w0", "r"(SEL_KDATA));
    check_fault("lldt_not_ldt", &last_fault);
    EXPECT_FAULT("ltr %w0", "r"(SEL_TSS));
    check_fault("ltr_busy_tss", &last_fault);
}

/* ======================================================================
 * Port I/O
 * ====================================================================== */

/* Port I/O in every form: immediate port and DX, byte/word/dword, and the
 * string forms with REP. Ports no device claims read as all ones. */
void check_port_io(void)
{
    outb(COM1_SCR, 0xa5);                           /* DX form (port > 0xff) */
    check_hex("uart_scratch", inb(COM1_SCR));
    outb(PIC1_DATA, 0xa5);                          /* immediate form */
    check_hex("pic_master_imr", inb(PIC1_DATA));
    outb(PIC1_DATA, 0xff);
    uint16_t pic2 = PIC2_DATA;
    __asm__ volatile("outb %b0, %w1" : : "a"(0x5a), "d"(pic2));   /* DX form */
    check_hex("pic_slave_imr", inb(PIC2_DATA));
    outb(PIC2_DATA, 0xff);

    (void)pit_read();       /* the count itself depends on time */
    check_word("pit_latch_read", "done");

    /* REP OUTSB sends a string to the UART: it shows up in the line. With
     * the FIFO on, an empty THR takes 16 bytes at once. */
    static const char text[] = "via-rep-outsb\n";
    check_begin("", "rep_outsb");
    uart_wait_empty();
    const char *src = text;
    uintptr_t n = sizeof(text) - 1;
    __asm__ volatile("rep outsb" : "+S"(src), "+c"(n) : "d"((uint16_t)COM1) : "memory");

    /* REP INSB reads the scratch register four times. */
    uint8_t buf[4] = { 0, 0, 0, 0 };
    uint8_t *dst = buf;
    n = sizeof(buf);
    outb(COM1_SCR, 0x3c);
    __asm__ volatile("rep insb" : "+D"(dst), "+c"(n) : "d"((uint16_t)COM1_SCR) : "memory");
    check_hex("rep_insb", (uint32_t)buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24);
    check_yes("rep_insb_regs", n == 0 && dst == buf + 4);

    check_hex("inb_unclaimed", inb(UNCLAIMED));
    check_hex("inw_unclaimed", inw(UNCLAIMED));
    check_hex("inl_unclaimed", inl(UNCLAIMED));
    outw(UNCLAIMED, 0x1234);
    outl(UNCLAIMED, 0x12345678);
    check_word("out_unclaimed", "done");
}
