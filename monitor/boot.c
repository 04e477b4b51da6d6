/* popek — `popek boot`: the monitor's loop.
 *
 * Each stop of the guest process is one of:
 *   - SIGTRAP from an INT3 the monitor placed: emulate the patched site;
 *   - SIGSEGV from #GP (si_code SI_KERNEL): a privileged instruction, or a
 *     sensitive one that faults at CPL 3: decode at RIP and emulate it, or
 *     deliver #GP when the monitor has no emulation for it;
 *   - SIGSEGV from a page fault: an instruction fetch from a page not yet
 *     scanned (scan it), a write to a code page (release it), or an access
 *     outside guest RAM (a virtual #PF);
 *   - SIGILL, SIGFPE, SIGBUS, a single-step SIGTRAP, the guest's own INT3:
 *     the matching virtual exception, through the guest's IDT;
 *   - a seccomp stop: the guest tried a host system call; it never runs;
 *   - an interrupt the monitor asked for when the PIT's next tick was due.
 * Before the guest runs again, a pending virtual interrupt enters it when
 * its virtual IF is 1.
 *
 * A file patched with --fast-path has blocks in its trampolines that
 * emulate PUSHF, POPF, CLI, STI and the cheap reads of the vcpu without a
 * stop, against the vcpu page (fastpath.h): a page of guest RAM at the
 * address its table names. The monitor writes the page from the vcpu before
 * the guest runs and takes the virtual flags back at each stop; the page
 * tells a block when an interrupt waits, so a POPF or STI that would let it
 * in stops. Since the virtual IF can then change without a stop, the timer
 * stops the guest at each tick; and an interrupt never enters in the middle
 * of a block, nor between an STI block and the next instruction (the guest
 * is let run a moment longer). */
#include "popek/boot.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <Zydis/Zydis.h>

#include "internal/codepages.h"
#include "internal/guest.h"
#include "internal/tracee.h"
#include "../scanner/internal/decoder.h"
#include "popek/devices.h"
#include "popek/fastpath.h"
#include "popek/image.h"
#include "popek/vcpu.h"

/* How long an interrupt waits for the guest to leave a fast-path block
 * (a few dozen instructions) before the monitor looks again. */
enum { BLOCK_WAIT_NS = 20000 };

typedef struct boot {
    const pk_boot_options *opts;
    pk_boot_result *res;
    pk_tracee tracee;
    pk_codepages pages;
    pk_devices *devices;
    pk_vcpu vcpu;
    pk_vcpu_page *page;         /* the fast path's vcpu page, in guest RAM, or NULL */
    pk_regs regs;
    pk_guest_mem mem;
    ZydisDecoder decoder;
    ZydisFormatter formatter;
    bool only[PK_CLASS_COUNT];  /* the rows patched */
    bool regs_dirty;
    bool halted;
    bool ended;
    bool signal_pending;        /* the last stop left a fault's signal queued */
    uint64_t release_after_step; /* a code page opened for one instruction, or 0 */
    uint64_t step_from;         /* where a single step for an interrupt shadow began */
    uint64_t deadline_ns;       /* --timeout, or 0 */
} boot;

static void end(boot *b, pk_guest_end how, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void end(boot *b, pk_guest_end how, const char *fmt, ...)
{
    static const int status[] = {
        [PK_GUEST_TRIPLE_FAULT] = PK_STATUS_TRIPLE_FAULT,
        [PK_GUEST_UNSUPPORTED] = PK_STATUS_UNSUPPORTED,
        [PK_GUEST_TIMEOUT] = PK_STATUS_TIMEOUT,
        [PK_GUEST_MONITOR_ERROR] = PK_STATUS_MONITOR_ERROR,
    };
    if (b->ended)
        return;
    b->ended = true;
    b->res->end = how;
    if (how != PK_GUEST_EXIT)
        b->res->status = status[how];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->res->report, sizeof b->res->report, fmt, ap);
    va_end(ap);
}

static void monitor_failed(boot *b, const pk_error *err)
{
    end(b, PK_GUEST_MONITOR_ERROR, "monitor error: %s", err->msg);
}

/* Guest memory for the emulator: RAM, read and written directly. A write
 * to a code page releases it, as a write by the guest itself would. */
static bool mem_read(void *ctx, uint64_t addr, void *buf, size_t size)
{
    const boot *b = ctx;
    if (!pk_tracee_holds(&b->tracee, addr, size))
        return false;
    memcpy(buf, b->tracee.ram + addr, size);
    return true;
}

static bool mem_write(void *ctx, uint64_t addr, const void *buf, size_t size)
{
    boot *b = ctx;
    if (!pk_tracee_holds(&b->tracee, addr, size))
        return false;
    /* Release first: releasing puts original bytes back under INT3s. */
    pk_error err;
    if (pk_codepages_written(&b->pages, addr, size, &err) != PK_OK)
        monitor_failed(b, &err);
    memcpy(b->tracee.ram + addr, buf, size);
    return true;
}

static void trace(boot *b, uint64_t addr, const char *what, const char *effect)
{
    if (b->opts->trace)
        fprintf(b->opts->trace, "popek: 0x%08llx  %-32s %s\n", (unsigned long long)addr, what,
                effect);
}

static void format_insn(boot *b, const ZydisDecodedInstruction *insn,
                        const ZydisDecodedOperand *ops, uint64_t addr, char *buf, size_t size)
{
    if (ZYAN_FAILED(ZydisFormatterFormatInstruction(&b->formatter, insn, ops,
                                                    insn->operand_count_visible, buf, size,
                                                    addr, NULL)))
        snprintf(buf, size, "(unformattable)");
}

/* Decodes the guest's instruction at addr as it was before patching. */
static bool decode_at(boot *b, uint64_t addr, ZydisDecodedInstruction *insn,
                      ZydisDecodedOperand *ops, uint8_t *bytes)
{
    size_t n = ZYDIS_MAX_INSTRUCTION_LENGTH;
    if (addr < b->tracee.ram_size && b->tracee.ram_size - addr < n)
        n = (size_t)(b->tracee.ram_size - addr);
    memset(bytes, 0, ZYDIS_MAX_INSTRUCTION_LENGTH);
    if (!pk_codepages_read_original(&b->pages, addr, bytes, n))
        return false;
    return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&b->decoder, bytes, n, insn, ops));
}

static bool vector_has_error_code(uint8_t vector)
{
    return vector == PK_VEC_DF || (vector >= PK_VEC_TS && vector <= PK_VEC_PF) ||
           vector == PK_VEC_AC || vector == 21;
}

static const char *vector_name(uint8_t vector)
{
    static const char *names[32] = {
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", NULL, "#TS", "#NP",
        "#SS", "#GP", "#PF", NULL, "#MF", "#AC", "#MC", "#XM",
    };
    return vector < 32 && names[vector] ? names[vector] : "exception";
}

/* Delivers an exception through the guest's IDT: a fault while delivering
 * it is a double fault, and a fault while delivering that ends the guest. */
static void raise_exception(boot *b, uint8_t vector, uint32_t error_code, uint64_t address)
{
    char what[64];
    snprintf(what, sizeof what, "%s(0x%x)", vector_name(vector), error_code);
    if (vector == PK_VEC_PF)
        b->vcpu.cr2 = address;
    b->res->stats.exceptions++;
    b->regs_dirty = true;
    b->halted = false;
    /* A fault of an instruction a jump moved into a trampoline is the
     * original instruction's: the guest's handler (a kernel's exception
     * table, say) knows it by its own address. */
    b->regs.rip = pk_codepages_original_of(&b->pages, b->regs.rip);
    uint64_t at = b->regs.rip;
    pk_emu_result r = pk_deliver(&b->vcpu, &b->regs, &b->mem, vector, PK_EVENT_EXCEPTION,
                                 vector_has_error_code(vector), error_code);
    if (r.status == PK_EMU_DONE) {
        trace(b, at, "<exception>", what);
        return;
    }
    if (r.status == PK_EMU_UNSUPPORTED) {
        end(b, PK_GUEST_UNSUPPORTED, "cannot deliver %s at 0x%llx: %s", what,
            (unsigned long long)at, r.effect);
        return;
    }
    if (vector != PK_VEC_DF && r.status == PK_EMU_FAULT) {
        trace(b, at, "<exception>", what);
        raise_exception(b, PK_VEC_DF, 0, 0);
        return;
    }
    end(b, PK_GUEST_TRIPLE_FAULT,
        "triple fault: %s at 0x%llx could not be delivered through the guest's IDT "
        "(base 0x%llx, limit 0x%x)", vector == PK_VEC_DF ? "#DF" : what,
        (unsigned long long)at, (unsigned long long)b->vcpu.idtr.base, b->vcpu.idtr.limit);
}

static void service_io(boot *b, const ZydisDecodedInstruction *insn,
                       const ZydisDecodedOperand *ops, pk_emu_result *r)
{
    pk_io *io = &r->io;
    uint64_t now = pk_now_ns();
    for (uint32_t i = 0; i < io->count; i++) {
        uint8_t *p = io->data + (size_t)i * io->size;
        if (io->in) {
            uint32_t v = pk_devices_in(b->devices, io->port, io->size, now, NULL);
            memcpy(p, &v, io->size);
        } else {
            uint32_t v = 0;
            memcpy(&v, p, io->size);
            pk_devices_out(b->devices, io->port, io->size, v, now, NULL);
        }
    }
    if (io->in) {
        pk_emu_result done = pk_emulate_io_in(insn, ops, &b->vcpu, &b->regs, &b->mem, io);
        r->status = done.status;
        r->fault = done.fault;
    }
    int status;
    if (pk_devices_exit_requested(b->devices, &status)) {
        b->res->status = status;
        end(b, PK_GUEST_EXIT, "the guest wrote %d to the exit port", status);
    }
}

/* Emulates the instruction decoded at regs.rip; patch is the patch that
 * brought it here, or NULL when the CPU faulted on it. */
static void emulate(boot *b, const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                    const uint8_t *bytes, const pk_patch *patch)
{
    uint64_t at = b->regs.rip;
    pk_emu_result r = pk_emulate(insn, ops, &b->vcpu, &b->regs, &b->mem);
    if (r.status == PK_EMU_UNSUPPORTED) {
        char text[96], hex[3 * ZYDIS_MAX_INSTRUCTION_LENGTH + 1] = "";
        format_insn(b, insn, ops, at, text, sizeof text);
        for (unsigned i = 0, n = 0; i < insn->length; i++)
            n += (unsigned)snprintf(hex + n, sizeof hex - n, "%s%02x", i ? " " : "", bytes[i]);
        end(b, PK_GUEST_UNSUPPORTED, "cannot emulate `%s` (%s) at 0x%llx%s", text, hex,
            (unsigned long long)at, patch ? ", a patched site" : "");
        return;
    }
    b->regs_dirty = true;
    pk_class_id cls = pk_classify(insn);
    if (cls != PK_CLASS_NONE)
        (patch ? b->res->stats.by_patch : b->res->stats.by_trap)[cls]++;
    if (r.status == PK_EMU_IO)
        service_io(b, insn, ops, &r);
    if (b->opts->trace && r.status != PK_EMU_FAULT) {
        char text[96];
        format_insn(b, insn, ops, at, text, sizeof text);
        trace(b, at, text, r.effect);
    }
    if (r.status == PK_EMU_FAULT) {
        raise_exception(b, r.fault.vector, r.fault.error_code, r.fault.address);
        return;
    }
    if (r.status == PK_EMU_HALT)
        b->halted = true;
    /* After a site a jump covers (or a return into the middle of one) the
     * guest goes on in the trampoline. */
    b->regs.rip = pk_codepages_resume_at(&b->pages, b->regs.rip);
}

static void emulate_patch(boot *b, const pk_patch *patch)
{
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(&b->decoder, patch->bytes, patch->len, &insn, ops))) {
        end(b, PK_GUEST_MONITOR_ERROR, "the patch at 0x%llx does not decode",
            (unsigned long long)patch->site);
        return;
    }
    b->regs.rip = patch->site;
    emulate(b, &insn, ops, patch->bytes, patch);
}

/* Linux reports #OF (INTO with OF set) as it reports #GP, but with RIP
 * past the INTO: an INTO just before a RIP that did not fault is it. */
static bool overflow_trap(boot *b)
{
    uint8_t before = 0;
    if (b->vcpu.bits == 64 || !(b->regs.rflags & PK_FLAG_OF) ||
        !mem_read(b, b->regs.rip - 1, &before, 1) || before != 0xCE)
        return false;
    b->regs.rip -= 1;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
    if (decode_at(b, b->regs.rip, &insn, ops, bytes))
        emulate(b, &insn, ops, bytes, NULL);
    return true;
}

/* The CPU refused the instruction at rip (#GP, #UD): emulate it when it is
 * one the catalog names, else give the guest the exception. */
static void emulate_faulting(boot *b, uint8_t vector)
{
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
    if (!decode_at(b, b->regs.rip, &insn, ops, bytes) || pk_classify(&insn) == PK_CLASS_NONE) {
        if (vector == PK_VEC_GP && overflow_trap(b))
            return;
        raise_exception(b, vector, 0, 0);
        return;
    }
    emulate(b, &insn, ops, bytes, NULL);
}

/* A host system call stops at its seccomp check and never runs. INT 0x80
 * is the guest's: its own IDT gets it. */
static void host_syscall(boot *b, const pk_stop *stop)
{
    pk_error err;
    b->res->stats.host_syscalls++;
    if (pk_tracee_skip_syscall(&b->tracee, &err) != PK_OK ||
        pk_tracee_get_regs(&b->tracee, &b->regs, &err) != PK_OK) {
        monitor_failed(b, &err);
        return;
    }
    /* Entering the kernel replaced rAX with -ENOSYS; the guest's own value
     * is the system call number. */
    b->regs.gpr[PK_RAX] = (uint64_t)stop->syscall_nr;
    b->regs_dirty = true;
    uint8_t insn[2] = { 0 };
    uint64_t at = b->regs.rip - 2;
    /* SYSENTER, and SYSCALL from 32-bit code, leave no return address: the
     * kernel points the process at its vDSO instead. */
    bool known = mem_read(b, at, insn, 2) &&
                 ((insn[0] == 0xCD && insn[1] == 0x80) || (insn[0] == 0x0F && insn[1] == 0x05));
    if (known)
        fprintf(stderr, "popek: contained: the guest made host system call %ld at 0x%llx; "
                "it did not run\n", stop->syscall_nr, (unsigned long long)at);
    else
        fprintf(stderr, "popek: contained: the guest made host system call %ld from an "
                "unknown address; it did not run\n", stop->syscall_nr);
    if (insn[0] == 0xCD && insn[1] == 0x80) {
        b->regs.rip = at;
        emulate_faulting(b, PK_VEC_GP);
        return;
    }
    if (insn[0] == 0x0F && insn[1] == 0x05 && !(b->vcpu.efer & 1)) {
        /* SYSCALL with EFER.SCE clear is #UD. Unpatched (trap-only), the
         * real SYSCALL has already overwritten RCX and R11, which the
         * guest would have kept: a difference no monitor can undo. */
        b->regs.rip = at;
        raise_exception(b, PK_VEC_UD, 0, 0);
        return;
    }
    /* A 64-bit guest's own SYSCALL (unpatched: a trap-only run) leaves its
     * address, and it has lost nothing the instruction keeps: the real one
     * overwrote RCX and R11, which SYSCALL itself sets. The vcpu's LSTAR,
     * STAR and FMASK take it from here. */
    if (insn[0] == 0x0F && insn[1] == 0x05 && b->vcpu.bits == 64) {
        b->regs.rip = at;
        emulate_faulting(b, PK_VEC_UD);
        return;
    }
    end(b, PK_GUEST_UNSUPPORTED,
        "the guest entered the host kernel (system call %ld) from an address it did not "
        "leave; the monitor cannot resume it", stop->syscall_nr);
}

/* The monitor stepped one instruction with TF, the way ptrace steps. A
 * PUSHF run like that (unpatched, in a trap-only run) pushed TF = 1, which
 * the guest must not see: a later POPF would make it trap. */
static void stepped_over_shadow(boot *b)
{
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
    if (!decode_at(b, b->step_from, &insn, ops, bytes) || pk_classify(&insn) != PK_CLASS_PUSHF ||
        b->regs.rip != b->step_from + insn.length)
        return;
    uint16_t image;
    uint64_t top = b->regs.gpr[PK_RSP] & (b->vcpu.bits == 64 ? ~0ull : 0xFFFFFFFFull);
    if (mem_read(b, top, &image, 2)) {
        image &= (uint16_t)~PK_FLAG_TF;
        mem_write(b, top, &image, 2);
    }
}

/* The guest's own INT3 (or INT 3) ran: RIP is past it, and the guest's IDT
 * gets the breakpoint as from the instruction itself. */
static void guest_breakpoint(boot *b)
{
    uint8_t before[2] = { 0 };
    mem_read(b, b->regs.rip - 2, before, 2);
    b->regs.rip -= before[1] == 0xCC ? 1 : 2;
    emulate_faulting(b, PK_VEC_BP);
}

/* A fault inside a fast-path block: what the block did is undone and the
 * guest goes on at the site's INT3, where the monitor emulates it: the
 * instruction faults there as it would have, or not (the block's own
 * pushes reach further below the stack pointer than it does). */
static bool block_fault(boot *b)
{
    if (!pk_codepages_unwind(&b->pages, &b->regs))
        return false;
    b->regs_dirty = true;
    return true;
}

/* A page fault: in RAM it is the monitor's own protection at work. */
static void page_fault(boot *b, uint64_t addr)
{
    pk_error err;
    bool ram = b->pages.patching && pk_tracee_holds(&b->tracee, addr, 1);
    if (ram && !pk_codepages_is_code(&b->pages, addr)) {
        /* Data pages can be read and written: this was an instruction fetch. */
        if (pk_codepages_execute(&b->pages, addr, b->regs.rip, &err) != PK_OK)
            monitor_failed(b, &err);
        return;
    }
    if (ram) {
        /* Code pages can be read and run: this was a write. The page goes
         * back to data and is scanned again before it next runs; when the
         * writing instruction itself lies on it, only after that one
         * instruction has run. */
        uint64_t page = addr / PK_GUEST_PAGE, rip = b->regs.rip;
        bool on_page = rip / PK_GUEST_PAGE == page ||
                       (rip + ZYDIS_MAX_INSTRUCTION_LENGTH - 1) / PK_GUEST_PAGE == page;
        pk_status s = on_page ? pk_codepages_open(&b->pages, addr, &err)
                              : pk_codepages_written(&b->pages, addr, 1, &err);
        if (s != PK_OK)
            monitor_failed(b, &err);
        if (on_page)
            b->release_after_step = addr;
        return;
    }
    if (block_fault(b))
        return;
    /* Outside RAM: not present. The error code says what the CPU would:
     * a fetch when it is where the guest runs, else a write when the
     * instruction writes memory (ptrace does not tell), and a user access
     * at the virtual CPL 3, as the emulation's faults do. */
    uint32_t ec = addr == b->regs.rip ? 0x10 : 0;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
    if (!ec && decode_at(b, b->regs.rip, &insn, ops, bytes))
        for (unsigned i = 0; i < insn.operand_count; i++)
            if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
                (ops[i].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE))
                ec |= 2;
    if (b->vcpu.cpl == 3)
        ec |= 4;
    raise_exception(b, PK_VEC_PF, ec, addr);
}

static void handle_signal(boot *b, const pk_stop *stop, bool stepped)
{
    if (stop->code <= 0)
        return; /* sent by a process (kill, tgkill), not raised by the guest */
    switch (stop->signal) {
    case SIGTRAP:
        if (stop->code == SI_KERNEL) {
            const pk_patch *p = pk_codepages_patch_at(&b->pages, b->regs.rip - 1);
            uint64_t resume = pk_codepages_resume_at(&b->pages, b->regs.rip - 1);
            if (p) {
                emulate_patch(b, p);
            } else if (resume != b->regs.rip - 1) {
                /* A native return into a jump's INT3 fill. */
                b->regs.rip = resume;
                b->regs_dirty = true;
            } else {
                guest_breakpoint(b);
            }
        } else if (stepped) {
            stepped_over_shadow(b);
        } else {
            raise_exception(b, PK_VEC_DB, 0, 0);
        }
        break;
    case SIGSEGV:
        if (stop->code == SI_KERNEL)
            emulate_faulting(b, PK_VEC_GP);
        else
            page_fault(b, stop->fault_addr);
        break;
    case SIGILL:
        emulate_faulting(b, PK_VEC_UD);
        break;
    case SIGFPE:
        raise_exception(b, stop->code == FPE_INTDIV || stop->code == FPE_INTOVF ? PK_VEC_DE : 16,
                        0, 0);
        break;
    case SIGBUS:
        if (!block_fault(b))
            raise_exception(b, PK_VEC_AC, 0, 0);
        break;
    default:
        break; /* a signal from outside (SIGWINCH, …): the guest never sees it */
    }
}

/* Enters a pending virtual interrupt when the guest's virtual IF allows:
 * false when it waits for the guest to run on a moment (see run). */
static bool deliver_interrupt(boot *b)
{
    if (!(b->vcpu.vflags & PK_FLAG_IF) || pk_devices_pending_vector(b->devices) < 0)
        return true;
    /* With the fast path: not inside a block, nor right after an STI
     * (emulated, or run by a block) before the next instruction. That
     * instruction is not stepped over as it is without blocks: a step
     * into a block's PUSHF would push TF. */
    if (b->vcpu.interrupt_shadow)
        return !b->page;
    if (!pk_codepages_between(&b->pages, b->regs.rip) ||
        pk_codepages_after_sti(&b->pages, b->regs.rip))
        return false;
    int vector = pk_devices_acknowledge(b->devices);
    if (vector < 0)
        return true;
    /* The frame records where the guest's own code stands (an IRET back
     * goes on in the trampoline again). */
    b->regs.rip = pk_codepages_original_of(&b->pages, b->regs.rip);
    uint64_t at = b->regs.rip;
    b->halted = false;
    b->regs_dirty = true;
    pk_emu_result r = pk_deliver(&b->vcpu, &b->regs, &b->mem, (uint8_t)vector,
                                 PK_EVENT_EXTERNAL, false, 0);
    b->res->stats.interrupts += r.status == PK_EMU_DONE;
    char what[32];
    snprintf(what, sizeof what, "vector 0x%02x", vector);
    trace(b, at, "<interrupt>", what);
    if (r.status == PK_EMU_FAULT)
        raise_exception(b, r.fault.vector, r.fault.error_code, r.fault.address);
    else if (r.status == PK_EMU_UNSUPPORTED)
        end(b, PK_GUEST_UNSUPPORTED, "cannot deliver interrupt vector 0x%02x at 0x%llx: %s",
            vector, (unsigned long long)at, r.effect);
    return true;
}

static uint64_t earlier(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* HLT: nothing runs until the next virtual interrupt (or the timeout). */
static void wait_halted(boot *b)
{
    uint64_t tick = pk_devices_next_interrupt(b->devices);
    if (!(b->vcpu.vflags & PK_FLAG_IF) || tick == UINT64_MAX) {
        end(b, PK_GUEST_TRIPLE_FAULT, "the guest halted at 0x%llx with %s: nothing can wake it",
            (unsigned long long)b->regs.rip - 1,
            b->vcpu.vflags & PK_FLAG_IF ? "no timer interrupt that can reach it"
                                        : "interrupts disabled");
        return;
    }
    uint64_t until = earlier(tick, b->deadline_ns);
    struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void handle_stop(boot *b, const pk_stop *stop, bool stepped)
{
    pk_error err;
    if (stop->kind == PK_STOP_EXITED) {
        end(b, PK_GUEST_MONITOR_ERROR, "the guest process ended (wait status 0x%x)",
            stop->status);
        return;
    }
    if (pk_tracee_get_regs(&b->tracee, &b->regs, &err) != PK_OK) {
        monitor_failed(b, &err);
        return;
    }
    b->signal_pending = stop->kind == PK_STOP_INTERRUPTED && stop->signal_pending;
    if (stop->kind == PK_STOP_SYSCALL)
        host_syscall(b, stop);
    else if (stop->kind == PK_STOP_SIGNAL)
        handle_signal(b, stop, stepped);
}

static void run(boot *b)
{
    pk_error err;
    uint64_t start = pk_now_ns(), stopped_at = start;
    if (b->opts->timeout > 0)
        b->deadline_ns = start + (uint64_t)(b->opts->timeout * 1e9);
    while (!b->ended) {
        uint64_t now = pk_now_ns();
        if (b->deadline_ns && now >= b->deadline_ns) {
            end(b, PK_GUEST_TIMEOUT, "timed out after %g s at 0x%llx", b->opts->timeout,
                (unsigned long long)b->regs.rip);
            break;
        }
        pk_devices_advance(b->devices, now);
        bool delivered = b->signal_pending || deliver_interrupt(b);
        b->signal_pending = false;
        if (b->ended)
            break;
        if (b->halted) {
            wait_halted(b);
            continue;
        }
        if (b->regs_dirty && pk_tracee_set_regs(&b->tracee, &b->regs, &err) != PK_OK) {
            monitor_failed(b, &err);
            break;
        }
        b->regs_dirty = false;
        /* After STI or MOV SS the next instruction runs before any interrupt:
         * step over it when one is waiting. */
        bool step = b->release_after_step ||
                    (!b->page && b->vcpu.interrupt_shadow && (b->vcpu.vflags & PK_FLAG_IF) &&
                     pk_devices_pending_vector(b->devices) >= 0);
        /* Stop the guest for the next tick only when it could take it (with
         * the fast path, whenever none waits: a block may set the virtual
         * IF without a stop). An interrupt that waits for the end of a
         * block is let in a moment later. */
        bool could_take = b->page ? pk_devices_pending_vector(b->devices) < 0
                                  : (b->vcpu.vflags & PK_FLAG_IF);
        uint64_t wake = step || !could_take ? 0 : pk_devices_next_interrupt(b->devices);
        if (wake == UINT64_MAX)
            wake = 0;
        if (!delivered)
            wake = now + BLOCK_WAIT_NS;
        wake = earlier(wake, b->deadline_ns);
        if (b->page)
            pk_vcpu_page_store(b->page, &b->vcpu, pk_devices_pending_vector(b->devices) >= 0);
        b->res->stats.monitor_ns += pk_now_ns() - stopped_at;
        pk_stop stop;
        b->step_from = b->regs.rip;
        pk_status s = pk_tracee_run(&b->tracee, step, wake, &stop, &err);
        stopped_at = pk_now_ns();
        b->res->stats.stops++;
        if (b->page)
            pk_vcpu_page_load(b->page, &b->vcpu);
        if (s != PK_OK) {
            monitor_failed(b, &err);
            break;
        }
        /* The shadow lasts one instruction; an interrupt stop before that
         * instruction ran leaves it in place. */
        if (!(stop.kind == PK_STOP_INTERRUPTED && stop.rip == b->step_from))
            b->vcpu.interrupt_shadow = false;
        if (b->release_after_step &&
            pk_codepages_written(&b->pages, b->release_after_step, 1, &err) != PK_OK) {
            monitor_failed(b, &err);
            break;
        }
        b->release_after_step = 0;
        handle_stop(b, &stop, step);
    }
    uint64_t finish = pk_now_ns();
    b->res->stats.monitor_ns += finish - stopped_at;
    b->res->stats.total_ns = finish - start;
}

/* The rows patched: the --only rows, or those of the chosen sets, and
 * always the ways into a kernel (INT 0x80, SYSCALL, SYSENTER), which are
 * the guest's own events here, never the host's. */
static void choose_rows(boot *b)
{
    unsigned sets = b->opts->sets ? b->opts->sets : PK_SET_PG;
    for (int c = 0; c < PK_CLASS_COUNT; c++) {
        const pk_class *row = pk_class_get((pk_class_id)c);
        b->only[c] = b->opts->only ? b->opts->only[c]
                                   : (row->set & sets) && !(row->flags & PK_CLASS_OPT_IN);
    }
    b->only[PK_CLASS_INT80] = b->only[PK_CLASS_SYSCALL] = b->only[PK_CLASS_SYSENTER] = true;
}

static pk_status start_guest(boot *b, const pk_image *img, pk_error *err)
{
    const pk_boot_options *o = b->opts;
    pk_guest g;
    PK_CHECK(pk_guest_read(&g, img, err));
    uint64_t mbi = 0;
    pk_status s = pk_tracee_spawn(&b->tracee, o->mem_size ? o->mem_size : 64ull << 20,
                                  g.bits == 64, err);
    if (s == PK_OK)
        s = pk_guest_place(&g, img, b->tracee.ram, b->tracee.ram_low, b->tracee.ram_size, err);
    if (s == PK_OK)
        s = pk_multiboot_write(&g, b->tracee.ram, b->tracee.ram_low, b->tracee.ram_size,
                               o->cmdline ? o->cmdline : "", &mbi, err);
    if (s == PK_OK)
        s = pk_codepages_init(&b->pages, &b->tracee, g.bits, PK_SET_ALL, b->only, !o->no_patch,
                              err);
    if (s == PK_OK)
        s = pk_codepages_load_image(&b->pages, img, err);
    uint64_t page = img->is_patched && !o->no_patch ? img->patched.vcpu_page : 0;
    if (s == PK_OK && page) {
        if (page % PK_GUEST_PAGE || !pk_tracee_holds(&b->tracee, page, PK_GUEST_PAGE))
            s = pk_fail(err, PK_ERR_UNSUPPORTED, "the vcpu page at 0x%llx is not a page of "
                        "guest RAM", (unsigned long long)page);
        else
            b->page = (pk_vcpu_page *)(b->tracee.ram + page);
    }
    if (s == PK_OK) {
        b->res->stats.sites_patched = b->pages.npatches;
        pk_vcpu_reset(&b->vcpu, g.bits);
        memset(&b->regs, 0, sizeof b->regs);
        b->regs.rip = g.entry;
        b->regs.rflags = 0x202; /* the real IF stays 1 */
        b->regs.gpr[g.bits == 64 ? PK_RDI : PK_RBX] = mbi;
        if (g.bits == 32)
            b->regs.gpr[PK_RAX] = PK_MULTIBOOT_MAGIC;
        b->regs_dirty = true;
        if (!pk_decoder_init(&b->decoder, g.bits, false))
            s = pk_fail(err, PK_ERR_INTERNAL, "cannot set up the Zydis decoder");
    }
    pk_guest_free(&g);
    return s;
}

pk_status pk_boot(const char *path, const pk_boot_options *opts, pk_boot_result *result,
                  pk_error *err)
{
    memset(result, 0, sizeof *result);
    if (opts->mem_size && (opts->mem_size < (1u << 20) || opts->mem_size > (3ull << 30) ||
                           opts->mem_size % PK_GUEST_PAGE))
        return pk_fail(err, PK_ERR_USAGE, "guest memory must be 1 MiB to 3 GiB in whole pages");
    boot b = { .opts = opts, .res = result };
    b.tracee.pid = -1;
    b.tracee.ram_fd = -1;
    b.mem = (pk_guest_mem){ &b, mem_read, mem_write };
    ZydisFormatterInit(&b.formatter, ZYDIS_FORMATTER_STYLE_INTEL);
    choose_rows(&b);

    pk_image img;
    PK_CHECK(pk_image_load_file(&img, path, err));
    b.devices = pk_devices_new(opts->uart ? opts->uart : stdout, pk_now_ns());
    pk_status s = b.devices ? start_guest(&b, &img, err)
                            : pk_fail(err, PK_ERR_NOMEM, "out of memory");
    pk_image_free(&img);
    if (s == PK_OK) {
        pk_tracee_pin(&b.tracee); /* after the boot scan, which uses every CPU */
        run(&b);
    }
    result->stats.pages_scanned = b.pages.pages_scanned;
    result->stats.pages_released = b.pages.pages_released;
    pk_codepages_free(&b.pages);
    pk_tracee_destroy(&b.tracee);
    pk_devices_free(b.devices);
    return s;
}
