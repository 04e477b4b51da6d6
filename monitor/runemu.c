/* popek — `popek run`: a patched site, emulated or run natively.
 *
 * What a site shows of the processor comes from the profile: SGDT, SIDT,
 * SLDT, STR and SMSW give its values, and CPUID, RDTSC and RDTSCP too where
 * it sets them; PUSHF and POPF keep IF and IOPL per thread, and NT and ID
 * in the thread's real flags (where Linux keeps them, and where the fast
 * path's blocks leave them); the segment-register reads give the thread's
 * real selectors. All but CPUID
 * and the TSC go through pk_emulate, as in `popek boot`, with a virtual CPU
 * at CPL 3.
 *
 * The rest act on the real machine and have nothing to hide from an
 * ordinary program: LAR, LSL, VERR and VERW check the process's real GDT
 * and LDT (the LDT it set up with modify_ldt, the vDSO's per-CPU segment),
 * segment loads and far transfers load real descriptors, CPUID and RDTSC
 * read the real processor (unless the profile says otherwise). Such a site
 * runs natively out of line: a copy of the instruction, its RIP-relative displacement adjusted, stands in the
 * monitor's page in the process, and the thread steps it there. So does a
 * site whose emulation would fault: the copy raises the very fault the
 * instruction raises natively, which the program then receives at the
 * site's own address. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <x86intrin.h>

#include "popek/run.h"
#include "popek/vcpu.h"
#include "internal/run.h"
#include "internal/tracee.h"

/* NT and ID: a thread's own, in its real flags. */
#define REAL_NT_ID (PK_FLAG_NT | PK_FLAG_ID)

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

/* Parses the whole of text as one number (C notation) of at most max. */
static bool parse_number(const char *text, uint64_t max, uint64_t *v)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)text[0]))
        return false; /* (strtoull would take a sign or spaces) */
    unsigned long long n = strtoull(text, &end, 0);
    if (*end || errno || n > max)
        return false;
    *v = n;
    return true;
}

/* The part of s between spaces, written over s. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* "cpuid.LEAF[.SUBLEAF]" = "EAX EBX ECX EDX": into p. */
static bool parse_cpuid(pk_run_profile *p, char *key, char *value)
{
    pk_run_cpuid c = { .any_subleaf = true };
    char *dot = strchr(key, '.');
    uint64_t v;
    if (dot)
        *dot = 0;
    if (!parse_number(key, 0xffffffff, &v))
        return false;
    c.leaf = (uint32_t)v;
    if (dot) {
        if (!parse_number(dot + 1, 0xffffffff, &v))
            return false;
        c.subleaf = (uint32_t)v;
        c.any_subleaf = false;
    }
    uint32_t *out[4] = { &c.eax, &c.ebx, &c.ecx, &c.edx };
    const char *spaces = " \t\v\f\r\n";
    char *save = NULL, *word = strtok_r(value, spaces, &save);
    for (int i = 0; i < 4; i++, word = strtok_r(NULL, spaces, &save)) {
        if (!word || !parse_number(word, 0xffffffff, &v))
            return false;
        *out[i] = (uint32_t)v;
    }
    if (word)
        return false;
    unsigned i = 0;
    while (i < p->ncpuid && !(p->cpuid[i].leaf == c.leaf && p->cpuid[i].subleaf == c.subleaf &&
                              p->cpuid[i].any_subleaf == c.any_subleaf))
        i++;
    if (i == PK_RUN_CPUID_MAX)
        return false;
    p->cpuid[i] = c;
    if (i == p->ncpuid)
        p->ncpuid++;
    return true;
}

/* The keys of a profile that take one number: the largest, and where it goes. */
typedef struct profile_key {
    const char *name;
    uint64_t max;
    void (*set)(pk_run_profile *p, uint64_t v);
} profile_key;

static void set_gdt_base(pk_run_profile *p, uint64_t v) { p->gdt_base = v; }
static void set_gdt_limit(pk_run_profile *p, uint64_t v) { p->gdt_limit = (uint16_t)v; }
static void set_idt_base(pk_run_profile *p, uint64_t v) { p->idt_base = v; }
static void set_idt_limit(pk_run_profile *p, uint64_t v) { p->idt_limit = (uint16_t)v; }
static void set_cr0(pk_run_profile *p, uint64_t v) { p->cr0 = v; }
static void set_tr(pk_run_profile *p, uint64_t v) { p->tr = (uint16_t)v; }
static void set_ldtr(pk_run_profile *p, uint64_t v)
{
    p->ldtr = (uint16_t)v;
    p->ldtr_always = true;
}
static void set_tsc(pk_run_profile *p, uint64_t v)
{
    p->tsc = v;
    p->tsc_set = true;
}
static void set_tsc_aux(pk_run_profile *p, uint64_t v)
{
    p->tsc_aux = (uint32_t)v;
    p->tsc_aux_set = true;
}

static const profile_key profile_keys[] = {
    { "gdt_base", UINT64_MAX, set_gdt_base }, { "gdt_limit", 0xffff, set_gdt_limit },
    { "idt_base", UINT64_MAX, set_idt_base }, { "idt_limit", 0xffff, set_idt_limit },
    { "cr0", UINT64_MAX, set_cr0 }, { "tr", 0xffff, set_tr }, { "ldtr", 0xffff, set_ldtr },
    { "tsc", UINT64_MAX, set_tsc }, { "tsc_aux", 0xffffffff, set_tsc_aux },
    { NULL, 0, NULL },
};

pk_status pk_run_profile_load(pk_run_profile *p, const char *path, pk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return pk_fail(err, PK_ERR_IO, "%s", strerror(errno));
    char *line = NULL;
    size_t size = 0;
    unsigned n = 0;
    pk_status s = PK_OK;
    while (s == PK_OK && getline(&line, &size, f) >= 0) {
        n++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *eq = strchr(line, '=');
        if (!eq) {
            if (*trim(line))
                s = pk_fail(err, PK_ERR_FORMAT, "line %u: expected KEY = VALUE", n);
            continue;
        }
        *eq = 0;
        char *key = trim(line), *value = trim(eq + 1);
        uint64_t v = 0;
        if (!strncmp(key, "cpuid.", 6)) {
            if (!parse_cpuid(p, key + 6, value))
                s = pk_fail(err, PK_ERR_FORMAT, "line %u: expected cpuid.LEAF[.SUBLEAF] = EAX "
                            "EBX ECX EDX (32-bit numbers; at most %d leaves)", n,
                            PK_RUN_CPUID_MAX);
            continue;
        }
        const profile_key *k = profile_keys;
        while (k->name && strcmp(k->name, key))
            k++;
        if (!k->name)
            s = pk_fail(err, PK_ERR_FORMAT, "line %u: no key '%s' (gdt_base, gdt_limit, "
                        "idt_base, idt_limit, cr0, tr, ldtr, tsc, tsc_aux, cpuid.LEAF)", n, key);
        else if (!parse_number(value, k->max, &v))
            s = pk_fail(err, PK_ERR_FORMAT, "line %u: expected %s = NUMBER%s", n, key,
                        k->max == 0xffff ? " (16 bits)" : k->max == 0xffffffff ? " (32 bits)" : "");
        else
            k->set(p, v);
    }
    free(line);
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

/* The virtual CPU every thread of p sees: CPL 3, IF set, and the
 * profile's tables, TR, LDTR and CR0. */
static void process_vcpu(const run_engine *e, const run_process *p, pk_vcpu *v)
{
    pk_vcpu_reset(v, p->bits);
    v->cpl = 3;
    v->vflags = PK_FLAG_IF;
    v->gdtr.base = e->profile.gdt_base;
    v->gdtr.limit = e->profile.gdt_limit;
    v->idtr.base = e->profile.idt_base;
    v->idtr.limit = e->profile.idt_limit;
    v->cr0 = e->profile.cr0;
    v->seg[PK_TR].selector = e->profile.tr;
    v->seg[PK_LDTR].selector = p->has_ldt || e->profile.ldtr_always ? e->profile.ldtr : 0;
}

void run_fast_page(const run_engine *e, const run_process *p, pk_vcpu_page *page)
{
    pk_vcpu v;
    process_vcpu(e, p, &v);
    memset(page, 0, sizeof *page);
    pk_vcpu_page_store(page, &v, false);
}

/* The virtual CPU thread t sees: the process's, with the thread's IF and
 * IOPL, its real NT and ID, and its real selectors. */
static void thread_vcpu(const run_engine *e, const run_thread *t,
                        const struct user_regs_struct *r, pk_vcpu *v)
{
    process_vcpu(e, t->proc, v);
    v->vflags = (t->vflags & ~(uint64_t)REAL_NT_ID) | (r->eflags & REAL_NT_ID);
    const unsigned long long sel[PK_SREG_COUNT] = { r->es, r->cs, r->ss, r->ds, r->fs, r->gs };
    for (int i = 0; i < PK_SREG_COUNT; i++) {
        v->seg[i].selector = (uint16_t)sel[i];
        v->seg[i].base = 0;
        v->seg[i].limit = 0xffffffff;
    }
    v->seg[PK_FS].base = r->fs_base;
    v->seg[PK_GS].base = r->gs_base;
}

/* CPUID, RDTSC and RDTSCP where the profile sets what they read: false
 * when it does not (they run natively). effect says what it did. */
static bool profile_row(const run_engine *e, const pk_patch *site, struct user_regs_struct *r,
                        char *effect, size_t size)
{
    const pk_run_profile *pr = &e->profile;
    if (site->cls == PK_CLASS_CPUID) {
        uint32_t leaf = (uint32_t)r->rax, subleaf = (uint32_t)r->rcx;
        const pk_run_cpuid *hit = NULL;
        for (unsigned i = 0; i < pr->ncpuid; i++) {
            const pk_run_cpuid *c = &pr->cpuid[i];
            if (c->leaf == leaf && !c->any_subleaf && c->subleaf == subleaf) {
                hit = c;
                break;
            }
            if (c->leaf == leaf && c->any_subleaf)
                hit = c;
        }
        if (!hit)
            return false;
        r->rax = hit->eax;
        r->rbx = hit->ebx;
        r->rcx = hit->ecx;
        r->rdx = hit->edx;
        r->rip += site->len;
        if (hit->any_subleaf)
            snprintf(effect, size, "leaf 0x%x from the profile", leaf);
        else
            snprintf(effect, size, "leaf 0x%x.%u from the profile", leaf, subleaf);
        return true;
    }
    bool rdtscp = site->cls == PK_CLASS_RDTSCP;
    if ((site->cls != PK_CLASS_RDTSC && !rdtscp) || !(pr->tsc_set || (rdtscp && pr->tsc_aux_set)))
        return false;
    unsigned aux;
    uint64_t now = __rdtscp(&aux);
    uint64_t tsc = pr->tsc_set ? pr->tsc + (now - e->tsc_start) : now;
    r->rax = (uint32_t)tsc;
    r->rdx = tsc >> 32;
    if (rdtscp)
        r->rcx = pr->tsc_aux_set ? pr->tsc_aux : aux;
    r->rip += site->len;
    snprintf(effect, size, "TSC 0x%llx%s", (unsigned long long)tsc,
             pr->tsc_set ? " from the profile's start" : "");
    return true;
}

/* ---- run natively out of line ----------------------------------------------------- */

static uint64_t distance(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

/* Whether a thread of p is about to run the copy at addr. */
static bool slot_in_use(const run_engine *e, const run_process *p, uint64_t addr)
{
    for (size_t i = 0; i < e->nthreads; i++)
        if (e->threads[i]->proc == p && e->threads[i]->pending == RUN_NATIVE_STEP &&
            e->threads[i]->step_slot == addr)
            return true;
    return false;
}

/* Puts a copy of site in the monitor's page, to run at its new address:
 * a RIP-relative displacement is adjusted to reach the same byte. */
static pk_status copy_site(run_engine *e, run_thread *t, const pk_patch *site,
                           const ZydisDecodedInstruction *insn, bool keep, uint64_t *slot,
                           pk_error *err)
{
    run_process *p = t->proc;
    for (size_t i = 0; i < p->nslots && keep; i++)
        if (p->slots[i].site == site->site) {
            *slot = p->slots[i].addr;
            return PK_OK;
        }
    /* A RIP-relative operand must stay in reach of the copy. */
    bool relative = insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE;
    run_slot *reuse = NULL;
    for (size_t i = 0; i < p->nslots && !reuse; i++)
        if (!p->slots[i].site && !slot_in_use(e, p, p->slots[i].addr) &&
            (!relative || distance(p->slots[i].addr, site->site) < (1ull << 30)))
            reuse = &p->slots[i];
    uint64_t dist = distance(p->slot_page, site->site);
    if (!reuse &&
        (!p->slot_page || p->slot_used + 16 > 4096 || (relative && dist > (1ull << 30)))) {
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
    uint64_t at = reuse ? reuse->addr : p->slot_page + p->slot_used;
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
    /* (a copy not kept is free once the thread has run it: slot_in_use) */
    run_slot slot_of = { keep ? site->site : 0, at, site->len };
    if (reuse) {
        *reuse = slot_of;
    } else {
        if (!run_append((void **)&p->slots, &p->nslots, &p->slots_cap, &slot_of, sizeof slot_of))
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
        p->slot_used += 16;
    }
    *slot = at;
    return PK_OK;
}

/* Sends t to a copy of site (insn) out of line, for one step
 * (RUN_NATIVE_STEP); it goes on at resume, or back at at if the copy
 * faults or a signal comes first. keep: the copy stays for the site's
 * next run (a patched site; not an instruction of written code). */
static pk_status step_copy(run_engine *e, run_thread *t, const pk_patch *site,
                           const ZydisDecodedInstruction *insn, uint64_t at, uint64_t resume,
                           bool keep, struct user_regs_struct *r, pk_error *err)
{
    uint64_t slot = 0;
    PK_CHECK(copy_site(e, t, site, insn, keep, &slot, err));
    r->rip = slot;
    if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s", strerror(errno));
    t->pending = RUN_NATIVE_STEP;
    t->step_site = at;
    t->step_resume = resume;
    t->step_len = site->len;
    t->step_slot = slot;
    t->step_call_far = site->cls == PK_CLASS_CALL_FAR;
    t->step_width = (uint8_t)(insn->operand_width / 8);
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
    char effect[96];
    bool done = false;
    if (virtual_row(site->cls)) {
        pk_vcpu v;
        pk_regs regs;
        thread_vcpu(e, t, r, &v);
        pk_regs_from_user(r, &regs);
        pk_guest_mem mem = { p, mem_read, mem_write };
        pk_emu_result res = pk_emulate(&insn, ops, &v, &regs, &mem);
        /* A fault (or a form it does not emulate) runs natively, below. */
        if ((done = res.status == PK_EMU_DONE)) {
            regs.rflags = (regs.rflags & ~(uint64_t)REAL_NT_ID) | (v.vflags & REAL_NT_ID);
            pk_regs_to_user(&regs, r);
            t->vflags = v.vflags & ~(uint64_t)REAL_NT_ID;
            snprintf(effect, sizeof effect, "%s", res.effect);
        }
    } else {
        done = profile_row(e, site, r, effect, sizeof effect);
    }
    if (done) {
        if (r->rip == site->site + site->len)
            r->rip = resume;
        e->stats->emulated[site->cls]++;
        if (e->opts->trace)
            run_log(e, "[%d] 0x%llx %s: %s", (int)t->tid, (unsigned long long)site->site,
                    pk_class_get(site->cls)->key, effect);
        if (ptrace(PTRACE_SETREGS, t->tid, 0, r) != 0)
            return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_SETREGS): %s", strerror(errno));
        return PK_OK;
    }
    e->stats->native[site->cls]++;
    if (e->opts->trace)
        run_log(e, "[%d] 0x%llx %s: run natively", (int)t->tid,
                (unsigned long long)site->site, pk_class_get(site->cls)->key);
    return step_copy(e, t, site, &insn, at, resume, true, r, err);
}

/* Whether insn can run from a copy as it is (its RIP-relative operand
 * adjusted by copy_site): no branch, nothing that depends on where it is. */
static bool copyable(const ZydisDecodedInstruction *insn)
{
    switch (insn->meta.category) {
    case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL:
    case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_SYSTEM:
        return false;
    default:
        return insn->mnemonic != ZYDIS_MNEMONIC_LOOP && insn->mnemonic != ZYDIS_MNEMONIC_XBEGIN;
    }
}

bool run_decode(run_engine *e, run_process *p, uint64_t rip, run_insn *ri)
{
    ri->at = (pk_patch){ .site = rip, .len = 15, .cls = PK_CLASS_NONE };
    const ZydisDecoder *dec = p->bits == 32 ? &e->decoder32 : &e->decoder64;
    while (ri->at.len && !run_peek(p, rip, ri->at.bytes, ri->at.len))
        ri->at.len--; /* the end of the mapping */
    if (!ri->at.len ||
        ZYAN_FAILED(ZydisDecoderDecodeFull(dec, ri->at.bytes, ri->at.len, &ri->insn, ri->ops)))
        return false;
    ri->at.len = ri->insn.length;
    return true;
}

bool run_copyable(const run_insn *ri)
{
    return copyable(&ri->insn);
}

pk_status run_copy_step(run_engine *e, run_thread *t, const run_insn *ri, bool *started,
                        pk_error *err)
{
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) != 0)
        return pk_fail(err, PK_ERR_INTERNAL, "ptrace(PTRACE_GETREGS): %s", strerror(errno));
    pk_status s = step_copy(e, t, &ri->at, &ri->insn, ri->at.site, ri->at.site + ri->at.len,
                            false, &r, err);
    *started = s == PK_OK;
    return s == PK_ERR_UNSUPPORTED ? PK_OK : s;
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
