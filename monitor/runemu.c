/* popek — `popek run`: a patched site, emulated or run natively.
 *
 * What a site shows of the processor comes from the profile: SGDT, SIDT,
 * SLDT, STR and SMSW give its values; PUSHF and POPF keep IF, IOPL, NT and
 * ID per thread; the segment-register reads give the thread's real
 * selectors. All of these go through pk_emulate, as in `popek boot`, with a
 * virtual CPU at CPL 3.
 *
 * The rest act on the real machine and have nothing to hide from an
 * ordinary program: LAR, LSL, VERR and VERW check the process's real GDT
 * and LDT (the LDT it set up with modify_ldt, the vDSO's per-CPU segment),
 * segment loads and far transfers load real descriptors, CPUID and RDTSC
 * read the real processor. Such a site runs natively out of line: a copy
 * of the instruction, its RIP-relative displacement adjusted, stands in the
 * monitor's page in the process, and the thread steps it there. So does a
 * site whose emulation would fault: the copy raises the very fault the
 * instruction raises natively, which the program then receives at the
 * site's own address. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "popek/run.h"
#include "popek/vcpu.h"
#include "internal/run.h"
#include "internal/tracee.h"

/* ---- the profile -------------------------------------------------------------- */

void pk_run_profile_default(pk_run_profile *p)
{
    memset(p, 0, sizeof *p);
    p->gdt_base = 0xfffffffffffe0000ull;
    p->idt_base = 0xffffffffffff0000ull;
    p->cr0 = 0x80050033;
    p->tr = 0x40;
    p->ldtr = 0x50;
}

pk_status pk_run_profile_load(pk_run_profile *p, const char *path, pk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return pk_fail(err, PK_ERR_IO, "%s", strerror(errno));
    char line[256];
    unsigned n = 0;
    pk_status s = PK_OK;
    while (s == PK_OK && fgets(line, sizeof line, f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char key[32], value[64], extra[2];
        int got = sscanf(line, " %31[a-z0-9_] = %63s %1s", key, value, extra);
        if (got <= 0 && strspn(line, " \t\r\n") == strlen(line))
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 0);
        if (got != 2 || errno || *end || value[0] == '-')
            s = pk_fail(err, PK_ERR_FORMAT, "line %u: expected KEY = NUMBER", n);
        else if (!strcmp(key, "gdt_base")) p->gdt_base = v;
        else if (!strcmp(key, "idt_base")) p->idt_base = v;
        else if (!strcmp(key, "cr0")) p->cr0 = v;
        else if (v > 0xffff)
            s = pk_fail(err, PK_ERR_FORMAT, "line %u: %s is 16 bits", n, key);
        else if (!strcmp(key, "gdt_limit")) p->gdt_limit = (uint16_t)v;
        else if (!strcmp(key, "idt_limit")) p->idt_limit = (uint16_t)v;
        else if (!strcmp(key, "tr")) p->tr = (uint16_t)v;
        else if (!strcmp(key, "ldtr")) { p->ldtr = (uint16_t)v; p->ldtr_always = true; }
        else
            s = pk_fail(err, PK_ERR_FORMAT, "line %u: no key '%s' (gdt_base, gdt_limit, "
                        "idt_base, idt_limit, cr0, tr, ldtr)", n, key);
    }
    fclose(f);
    return s;
}

/* ---- the process's memory, as the program may touch it -------------------------- */

/* Through process_vm_readv/writev, which honour the page protections (a
 * store to a read-only page fails here as it faults natively). */
static bool mem_read(void *ctx, uint64_t addr, void *buf, size_t size)
{
    const run_process *p = ctx;
    struct iovec local = { buf, size }, remote = { (void *)(uintptr_t)addr, size };
    return process_vm_readv(p->pid, &local, 1, &remote, 1, 0) == (ssize_t)size;
}

static bool mem_write(void *ctx, uint64_t addr, const void *buf, size_t size)
{
    const run_process *p = ctx;
    struct iovec local = { (void *)buf, size }, remote = { (void *)(uintptr_t)addr, size };
    return process_vm_writev(p->pid, &local, 1, &remote, 1, 0) == (ssize_t)size;
}

/* ---- emulated against the profile ------------------------------------------------- */

static bool virtual_row(pk_class_id cls)
{
    switch (cls) {
    case PK_CLASS_PUSHF: case PK_CLASS_POPF:
    case PK_CLASS_SGDT: case PK_CLASS_SIDT: case PK_CLASS_SLDT: case PK_CLASS_SMSW:
    case PK_CLASS_STR:
    case PK_CLASS_MOV_FROM_SREG: case PK_CLASS_PUSH_SREG:
        return true;
    default:
        return false;
    }
}

/* The virtual CPU thread t sees: CPL 3, its flags, its real selectors, and
 * the profile's tables and CR0. */
static void thread_vcpu(const run_engine *e, const run_thread *t,
                        const struct user_regs_struct *r, pk_vcpu *v)
{
    const run_process *p = t->proc;
    pk_vcpu_reset(v, p->bits);
    v->cpl = 3;
    v->vflags = t->vflags;
    const unsigned long long sel[PK_SREG_COUNT] = { r->es, r->cs, r->ss, r->ds, r->fs, r->gs };
    for (int i = 0; i < PK_SREG_COUNT; i++) {
        v->seg[i].selector = (uint16_t)sel[i];
        v->seg[i].base = 0;
        v->seg[i].limit = 0xffffffff;
    }
    v->seg[PK_FS].base = r->fs_base;
    v->seg[PK_GS].base = r->gs_base;
    v->gdtr.base = e->profile.gdt_base;
    v->gdtr.limit = e->profile.gdt_limit;
    v->idtr.base = e->profile.idt_base;
    v->idtr.limit = e->profile.idt_limit;
    v->cr0 = e->profile.cr0;
    v->seg[PK_TR].selector = e->profile.tr;
    v->seg[PK_LDTR].selector = p->has_ldt || e->profile.ldtr_always ? e->profile.ldtr : 0;
}

/* ---- run natively out of line ----------------------------------------------------- */

/* Puts a copy of site in the monitor's page, to run at its new address:
 * a RIP-relative displacement is adjusted to reach the same byte. */
static pk_status copy_site(run_engine *e, run_thread *t, const pk_patch *site,
                           const ZydisDecodedInstruction *insn, uint64_t *slot, pk_error *err)
{
    run_process *p = t->proc;
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i].site == site->site) {
            *slot = p->slots[i].addr;
            return PK_OK;
        }
    /* A RIP-relative operand must stay in reach of the copy. */
    bool relative = insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE;
    uint64_t dist = p->slot_page > site->site ? p->slot_page - site->site
                                              : site->site - p->slot_page;
    if (!p->slot_page || p->slot_used + 16 > 4096 || (relative && dist > (1ull << 30))) {
        /* A new page: for a RIP-relative site, near it (the first free of
         * a few places within 256 MiB), else anywhere. */
        uint64_t page = 0;
        for (int k = relative ? 1 : 0; k <= 16 && !page; k++) {
            uint64_t near = (site->site & ~0xfffull) + (uint64_t)(k & 1 ? -1 : 1) *
                            (uint64_t)((k + 1) / 2) * (16ull << 20);
            PK_CHECK(run_map(e, t, k ? near : 0, 4096, &page, err));
        }
        if (!page)
            return pk_fail(err, PK_ERR_UNSUPPORTED, "no room for a copy of the site at 0x%llx "
                           "near it", (unsigned long long)site->site);
        p->slot_page = page;
        p->slot_used = 0;
    }
    uint64_t at = p->slot_page + p->slot_used;
    /* The copy, then INT3: an instruction Linux emulates (UMIP) raises no
     * single-step trap, and the thread must stop right after it anyway. */
    uint8_t code[16];
    memcpy(code, site->bytes, site->len);
    code[site->len] = 0xcc;
    if (insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) {
        int64_t disp = (int64_t)(site->site - at) + insn->raw.disp.value;
        if (insn->raw.disp.size != 32 || disp != (int32_t)disp)
            return pk_fail(err, PK_ERR_UNSUPPORTED, "cannot run the site at 0x%llx out of "
                           "line: its operand is out of reach", (unsigned long long)site->site);
        int32_t d = (int32_t)disp;
        memcpy(code + insn->raw.disp.offset, &d, 4);
    }
    if (!run_poke(p, at, code, site->len + 1u))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot write in the monitor's page");
    run_slot slot_of = { site->site, at, site->len };
    if (!run_append((void **)&p->slots, &p->nslots, &p->slots_cap, &slot_of, sizeof slot_of))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    p->slot_used += 16;
    *slot = at;
    return PK_OK;
}

pk_status run_emulate_site(run_engine *e, run_thread *t, const pk_patch *site, uint64_t at,
                           uint64_t resume, struct user_regs_struct *r, pk_error *err)
{
    run_process *p = t->proc;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    const ZydisDecoder *dec = p->bits == 32 ? &e->decoder32 : &e->decoder64;
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(dec, site->bytes, site->len, &insn, ops)))
        return pk_fail(err, PK_ERR_INTERNAL, "the site at 0x%llx does not decode",
                       (unsigned long long)site->site);
    r->rip = site->site;
    if (virtual_row(site->cls)) {
        pk_vcpu v;
        pk_regs regs;
        thread_vcpu(e, t, r, &v);
        pk_regs_from_user(r, &regs);
        pk_guest_mem mem = { p, mem_read, mem_write };
        pk_emu_result res = pk_emulate(&insn, ops, &v, &regs, &mem);
        if (res.status == PK_EMU_DONE) {
            if (regs.rip == site->site + site->len)
                regs.rip = resume;
            pk_regs_to_user(&regs, r);
            t->vflags = v.vflags;
            e->stats->emulated[site->cls]++;
            if (e->opts->trace)
                run_log(e, "[%d] 0x%llx %s: %s", (int)t->tid, (unsigned long long)site->site,
                        pk_class_get(site->cls)->key, res.effect);
            if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
                return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s",
                               strerror(errno));
            return PK_OK;
        }
        /* A fault (or a form it does not emulate): natively, below. */
    }
    uint64_t slot = 0;
    PK_CHECK(copy_site(e, t, site, &insn, &slot, err));
    e->stats->native[site->cls]++;
    if (e->opts->trace)
        run_log(e, "[%d] 0x%llx %s: run natively", (int)t->tid,
                (unsigned long long)site->site, pk_class_get(site->cls)->key);
    r->rip = slot;
    if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s", strerror(errno));
    t->pending = RUN_NATIVE_STEP;
    t->step_site = at;
    t->step_resume = resume;
    t->step_len = site->len;
    t->step_slot = slot;
    t->step_call_far = site->cls == PK_CLASS_CALL_FAR;
    t->step_width = (uint8_t)(insn.operand_width / 8);
    return PK_OK;
}

pk_status run_native_done(run_engine *e, run_thread *t, struct user_regs_struct *r,
                          pk_error *err)
{
    (void)e;
    t->pending = RUN_NOTHING;
    uint64_t slot = t->step_slot, end = slot + t->step_len;
    if (r->rip == end || r->rip == end + 1) {
        r->rip = t->step_resume;
    } else if (r->rip >= slot && r->rip < end) {
        /* A fault, or a signal before it ran: at the site's INT3 (where the
         * program, returning from a handler, meets it again). */
        r->rip = t->step_site;
    }
    if (t->step_call_far) {
        /* The return address it pushed is the copy's: make it the site's. */
        uint64_t back = 0, want = t->step_resume;
        unsigned w = t->step_width == 8 ? 8 : t->step_width == 2 ? 2 : 4;
        if (run_peek(t->proc, r->rsp, &back, w) && back == (end & (w == 8 ? ~0ull : w == 4 ? 0xffffffffull : 0xffffull)))
            run_poke(t->proc, r->rsp, &want, w);
    }
    if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s", strerror(errno));
    return PK_OK;
}
