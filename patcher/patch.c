/* popek — planning the patches of an image and writing them into its file.
 *
 * The plan goes through the sites in address order. Under the jump tactic a
 * site takes a 5-byte jmp to a trampoline when that is safe: the bytes the
 * jump replaces are the site and, when it is shorter than 5 bytes, the
 * instructions after it (or before it), which move into the trampoline.
 * Safe means control never arrives inside those bytes but at their start:
 * no branch target, symbol, relocation, landing pad, switch case or kernel
 * table names an address there (scan.h targets, flow.h), nothing there is
 * rewritten at run time or read at its address; in a table for a monitor
 * (not passthrough), which maps exception returns into the bytes and
 * faults out of the trampoline, a kernel's exception fixups may lie there
 * where a copied instruction begins and its faulting instructions may
 * move (flow.h resumes, looked_up); the function's jumps through
 * registers have known targets, nothing moved is an ENDBR, a trap or
 * something that cannot run elsewhere, and the code falls through to the
 * end of the bytes (or to a near RET or JMP, after which they are dead).
 * Later sites inside the replaced bytes join the same jump, and a jump may
 * grow to take in the next site. Where no jump is safe the site takes INT3. docs/patching.md
 * tells the rules at length. */
#include "popek/patch.h"

#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "../scanner/internal/decoder.h"
#include "../scanner/internal/search.h"
#include "popek/elfgrow.h"
#include "popek/flow.h"
#include "popek/image.h"
#include "popek/scan.h"
#include "popek/trampoline.h"

enum { JMP_LEN = 5 };

static const char *const nojump_reasons[PK_NOJUMP_COUNT] = {
    [PK_NOJUMP_CHOSEN] = "int3 chosen",
    [PK_NOJUMP_MODE] = "16-bit code",
    [PK_NOJUMP_ALTERNATIVE] = "replacement code the kernel copies elsewhere",
    [PK_NOJUMP_PINNED] = "bytes the kernel rewrites or finds by address",
    [PK_NOJUMP_SHORT] = "the code ends within 5 bytes",
    [PK_NOJUMP_TARGET] = "a branch target inside the bytes a jump replaces",
    [PK_NOJUMP_OPAQUE] = "in a function with a jump to unknown targets",
    [PK_NOJUMP_ENDBR] = "a jump would move an ENDBR",
    [PK_NOJUMP_TRAP] = "a jump would move a trap",
    [PK_NOJUMP_RELOCATE] = "an instruction that cannot run in a trampoline",
    [PK_NOJUMP_REACH] = "the trampolines are out of a jump's reach",
};

const char *pk_nojump_reason(pk_nojump why)
{
    return (unsigned)why < PK_NOJUMP_COUNT ? nojump_reasons[why] : "?";
}

/* ---- which sites to patch ----------------------------------------------------------- */

/* Picks the sites to patch from scan, in address order, into sel; lists the
 * others in plan->skips. */
static pk_status select_sites(const pk_scan *scan, const pk_plan_options *opts,
                              const pk_site **sel, size_t *nsel, pk_plan *plan, pk_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < scan->nsites; i++) {
        const pk_site *s = &scan->sites[i];
        const pk_class *c = pk_class_get((pk_class_id)s->cls);
        if ((c->flags & PK_CLASS_OPT_IN) && !(opts->only && opts->only[c->id]))
            continue;
        if (s->flags & PK_SITE_INSIDE_REACHED) {
            /* Not an instruction: patching it would change a reached one. */
            plan->skips[plan->nskips++] = (pk_skip){
                s->vaddr, c->id, "inside an instruction recursive descent reached" };
            continue;
        }
        /* Regions do not overlap in files that can be patched (relocatable
         * objects have no program headers, and pk_elf_grow refuses them).
         * Of two overlapping sites, the one recursive descent reached is
         * the instruction. */
        if (n && s->vaddr < sel[n - 1]->vaddr + sel[n - 1]->len) {
            const pk_site *prev = sel[n - 1];
            bool keep_new = (s->found & PK_FOUND_RECURSIVE) && !(prev->found & PK_FOUND_RECURSIVE);
            bool keep_old = (prev->found & PK_FOUND_RECURSIVE) && !(s->found & PK_FOUND_RECURSIVE);
            if (!keep_new && !keep_old && !opts->allow_skip)
                return pk_fail(err, PK_ERR_UNSUPPORTED,
                               "site 0x%llx (%s) overlaps the instruction at 0x%llx; "
                               "--allow-skip leaves it out",
                               (unsigned long long)s->vaddr, c->key,
                               (unsigned long long)prev->vaddr);
            if (!keep_new) {
                plan->skips[plan->nskips++] = (pk_skip){ s->vaddr, c->id,
                                                         "overlaps the instruction before it" };
                continue;
            }
            plan->skips[plan->nskips++] = (pk_skip){
                prev->vaddr, (pk_class_id)prev->cls,
                "overlaps an instruction recursive descent reached" };
            n--;
        }
        sel[n++] = s;
    }
    *nsel = n;
    return PK_OK;
}

/* ---- can a jump go here? ------------------------------------------------------------- */

/* What is known of the switch tables of functions with jumps through a
 * register (see known_tables). */
typedef struct switches {
    struct { uint64_t lo; bool known; } *fns;   /* functions looked at */
    size_t nfns;
    uint64_t *cases;        /* the tables' targets, sorted */
    size_t ncases;
    bool oom;
} switches;

typedef struct planner {
    const pk_image *img;
    const pk_scan *scan;
    const pk_flow *flow;
    const pk_plan_options *opts;
    const pk_site **sel;
    size_t nsel;
    ZydisDecoder decoder[2];    /* 32- and 64-bit, full decoding */
    switches *sw;
} planner;

/* The bytes one jump replaces: [site, end), holding sel[first .. first+nsites). */
typedef struct span {
    uint64_t site, end;
    size_t first, nsites;
} span;

enum { MAX_TABLES = 64, MAX_CASES = 4096 };

static void add_unique(uint64_t *v, size_t *n, uint64_t a)
{
    for (size_t k = 0; k < *n; k++)
        if (v[k] == a)
            return;
    if (*n < MAX_TABLES)
        v[(*n)++] = a;
}

/* Reads a table of s32 offsets at a, relative to base, while they point
 * into code, into pl->sw->cases; returns how many land in fn. */
static size_t read_cases(const planner *pl, uint64_t a, uint64_t base, pk_range fn)
{
    switches *sw = pl->sw;
    size_t in_fn = 0;
    for (unsigned k = 0; k < MAX_CASES; k++) {
        const uint8_t *p = pk_elf_loaded_bytes(pl->img->data, pl->img->data_len, a + 4 * k, 4,
                                               false);
        int32_t e;
        if (!p)
            break;
        memcpy(&e, p, 4);
        uint64_t t = base + (uint64_t)(int64_t)e;
        if (!pk_image_region_at(pl->img, t))
            break;
        if (!pk_push_address(&sw->cases, &sw->ncases, t)) {
            sw->oom = true;
            break;
        }
        in_fn += t - fn.lo < fn.hi - fn.lo;
    }
    return in_fn;
}

/* Whether the jump through a register jmp (at at, in 64-bit code) goes
 * where the instruction right before it, prev, says: prev is a MOV of
 * that very register from a constant that is a code address (which
 * decoding counts as a target: `mov $1f, %rax; jmp *%rax`), or from one
 * fixed place, RIP-relative or absolute (`mov saved_rip(%rip), %rax; jmp
 * *%rax`, as good as the `jmp *saved_rip(%rip)` no rule counts as opaque:
 * a tail call through a pointer that data or the code storing it names).
 * Only when control reaches jmp from prev alone (no known target at jmp)
 * and both are in step with recursive descent. */
static bool set_right_before(const planner *pl, const ZydisDecodedInstruction *prev,
                             const ZydisDecodedOperand *prev_ops,
                             const ZydisDecodedInstruction *jmp, const ZydisDecodedOperand *ops,
                             uint64_t at)
{
    if (prev->mnemonic != ZYDIS_MNEMONIC_MOV || prev->operand_count_visible != 2 ||
        jmp->operand_count_visible != 1 || ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER ||
        prev_ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER ||
        prev_ops[0].reg.value != ops[0].reg.value || ops[0].size != 64 ||
        pk_scan_out_of_step(pl->scan, at - prev->length, prev->length) ||
        pk_scan_out_of_step(pl->scan, at, jmp->length) ||
        pk_scan_has_target(pl->scan, at, at + 1) ||
        (pl->flow && (pk_flow_has_target(pl->flow, at, at + 1) ||
                      pk_flow_has_resume(pl->flow, at, at + 1))))
        return false;
    const ZydisDecodedOperand *src = &prev_ops[1];
    if (src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        uint64_t v = src->imm.is_signed ? (uint64_t)src->imm.value.s : src->imm.value.u;
        return pk_image_region_at(pl->img, v) != NULL;
    }
    return src->type == ZYDIS_OPERAND_TYPE_MEMORY &&
           (src->mem.base == ZYDIS_REGISTER_RIP || src->mem.base == ZYDIS_REGISTER_NONE) &&
           src->mem.index == ZYDIS_REGISTER_NONE && src->mem.segment != ZYDIS_REGISTER_FS &&
           src->mem.segment != ZYDIS_REGISTER_GS && src->size == 64;
}

/* Whether the targets of fn's jumps through registers are known. A switch
 * in position-independent x86-64 code jumps through a table of s32 offsets
 * from the table itself (lea T(%rip), %rdx; movslq (%rdx,%rax,4), %rax;
 * add %rdx, %rax; jmp *%rax), or, for labels as values, from a label in
 * the function. Every table fn names RIP-relatively is read against each
 * such base, the cases where they point into code kept as targets
 * (generously: what follows a table may read as more); fn is known when
 * its only opaque jumps go through a register and some table gives at
 * least two cases in fn, or when each of them is set right before (see
 * set_right_before), and then no table is read. */
static bool known_tables(const planner *pl, pk_range fn, const pk_region *r)
{
    switches *sw = pl->sw;
    for (size_t k = 0; k < sw->nfns; k++)
        if (sw->fns[k].lo == fn.lo)
            return sw->fns[k].known;
    void *grown = realloc(sw->fns, (sw->nfns + 1) * sizeof *sw->fns);
    if (!grown) {
        sw->oom = true;
        return false;
    }
    sw->fns = grown;
    bool known = r->bits == 64 && fn.lo >= r->vaddr && fn.hi <= r->vaddr + r->size;
    uint64_t tables[MAX_TABLES], bases[MAX_TABLES];
    size_t ntables = 0, nbases = 0, matched = 0;
    ZydisDecodedInstruction insn, prev;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT], prev_ops[2];
    bool have_prev = false;
    memset(&prev, 0, sizeof prev);
    memset(prev_ops, 0, sizeof prev_ops);
    for (uint64_t at = fn.lo; known && at < fn.hi;) {
        if (ZYAN_FAILED(ZydisDecoderDecodeFull(&pl->decoder[1], r->bytes + (at - r->vaddr),
                                               r->size - (at - r->vaddr), &insn, ops))) {
            at++;
            have_prev = false;
            continue;
        }
        for (unsigned k = 0; k < insn.operand_count_visible; k++) {
            ZyanU64 a;
            if (ops[k].type != ZYDIS_OPERAND_TYPE_MEMORY || ops[k].mem.base != ZYDIS_REGISTER_RIP ||
                ZYAN_FAILED(ZydisCalcAbsoluteAddress(&insn, &ops[k], at, &a)))
                continue;
            if (a - fn.lo < fn.hi - fn.lo)
                add_unique(bases, &nbases, a);
            else if (!pk_image_region_at(pl->img, a))
                add_unique(tables, &ntables, a);
        }
        if (pk_any_in(pl->scan->opaque_jumps, pl->scan->nopaque_jumps, at, at + 1)) {
            if (insn.raw.modrm.mod != 3)
                known = false; /* a jump through memory indexed by a register */
            else if (have_prev && set_right_before(pl, &prev, prev_ops, &insn, ops, at))
                matched++;
        }
        prev = insn;
        memcpy(prev_ops, ops, sizeof prev_ops);
        have_prev = true;
        at += insn.length;
    }
    /* Opaque jumps this walk did not match (or, out of step with the scan,
     * did not even see) need a table. */
    size_t opaque = pk_lower_bound(pl->scan->opaque_jumps, pl->scan->nopaque_jumps, fn.hi) -
                    pk_lower_bound(pl->scan->opaque_jumps, pl->scan->nopaque_jumps, fn.lo);
    size_t unset = opaque - (matched < opaque ? matched : opaque);
    size_t first = sw->ncases, best = 0;
    for (size_t t = 0; known && unset && t < ntables; t++) {
        size_t n = read_cases(pl, tables[t], tables[t], fn);
        best = n > best ? n : best;
        for (size_t b = 0; b < nbases; b++) {
            n = read_cases(pl, tables[t], bases[b], fn);
            best = n > best ? n : best;
        }
    }
    known = known && (!unset || best >= 2) && !sw->oom;
    if (sw->ncases > first)
        qsort(sw->cases, sw->ncases, sizeof *sw->cases, pk_compare_addresses);
    sw->fns[sw->nfns].lo = fn.lo;
    sw->fns[sw->nfns++].known = known;
    return known;
}

static bool is_endbr(const ZydisDecodedInstruction *insn)
{
    return insn->mnemonic == ZYDIS_MNEMONIC_ENDBR32 || insn->mnemonic == ZYDIS_MNEMONIC_ENDBR64;
}

enum { MAX_BEFORE = 4 };

/* The starts of up to MAX_BEFORE instructions right before site s, no
 * lower than floor, nearest first, into before: decoded from the start of
 * s's function (or symbol) when that stream meets s. Returns how many. */
static size_t starts_before(const planner *pl, const pk_site *s, uint64_t floor,
                            uint64_t before[MAX_BEFORE])
{
    const pk_region *r = &pl->img->regions[s->region];
    pk_range fn;
    const pk_symbol *sym;
    uint64_t lo;
    if (pl->flow && pk_flow_function_at(pl->flow, s->vaddr, &fn))
        lo = fn.lo;
    else if ((sym = pk_image_symbol_at(pl->img, r, s->vaddr)) && sym->func)
        lo = sym->addr;
    else
        return 0;
    if (lo < r->vaddr || lo >= s->vaddr)
        return 0;
    const ZydisDecoder *dec = &pl->decoder[r->bits == 64];
    uint64_t ring[MAX_BEFORE];
    size_t n = 0;
    uint64_t at = lo;
    while (at < s->vaddr) {
        ZydisDecodedInstruction insn;
        ZydisDecoderContext ctx;
        uint64_t off = at - r->vaddr;
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(dec, &ctx, r->bytes + off, r->size - off,
                                                      &insn)))
            return 0;
        ring[n++ % MAX_BEFORE] = at;
        at += insn.length;
    }
    if (at != s->vaddr)
        return 0; /* another stream: no known instructions before s */
    size_t k = 0;
    for (size_t m = 0; m < MAX_BEFORE && m < n; m++) {
        uint64_t a = ring[(n - 1 - m) % MAX_BEFORE];
        if (a < floor)
            break;
        before[k++] = a;
    }
    return k;
}

/* Whether insn (at at) has a RIP-relative operand addressing [lo, hi). */
static bool reads_range(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops,
                        uint64_t at, uint64_t lo, uint64_t hi)
{
    for (unsigned k = 0; k < insn->operand_count_visible; k++) {
        ZyanU64 a;
        if (ops[k].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[k].mem.base == ZYDIS_REGISTER_RIP &&
            ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(insn, &ops[k], at, &a)) && a - lo < hi - lo)
            return true;
    }
    return false;
}

/* Decides whether a jump at start (sel[i] or an instruction before it) can
 * replace sel[i] and what follows, up to min_end at least: fills *sp and
 * returns PK_NOJUMP_COUNT when it can, else the reason. */
static pk_nojump jump_from(const planner *pl, size_t i, uint64_t start, uint64_t min_end,
                           span *sp)
{
    const pk_site *s = pl->sel[i];
    const pk_region *r = &pl->img->regions[s->region];
    const ZydisDecoder *dec = &pl->decoder[r->bits == 64];
    uint64_t need = start + JMP_LEN > s->vaddr + s->len ? start + JMP_LEN : s->vaddr + s->len;
    if (need < min_end)
        need = min_end;
    if (need > r->vaddr + r->size)
        return PK_NOJUMP_SHORT;
    *sp = (span){ .site = start, .first = i };
    /* A monitor delivers the fault of a moved instruction at its original
     * address and sends code resuming inside the jump's bytes on to the
     * counterpart of the instruction there; without one (passthrough)
     * nothing maps. */
    bool monitor = !pl->opts->passthrough;
    uint64_t starts[PK_JUMP_MAX_LEN]; /* the instructions copied, where each begins */
    size_t nstarts = 0;
    uint64_t at = start;
    while (at < need) {
        uint64_t off = at - r->vaddr;
        ZydisDecodedInstruction insn;
        ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
        if (off >= r->size ||
            ZYAN_FAILED(ZydisDecoderDecodeFull(dec, r->bytes + off, r->size - off, &insn, ops)))
            return PK_NOJUMP_SHORT;
        size_t k = i + sp->nsites;
        bool site = at >= s->vaddr && k < pl->nsel && pl->sel[k]->vaddr == at;
        if (at >= s->vaddr && k < pl->nsel && !site && pl->sel[k]->vaddr < at + insn.length)
            return PK_NOJUMP_TARGET; /* a site out of step with this stream */
        if ((at < s->vaddr && at + insn.length > s->vaddr) ||
            pk_scan_out_of_step(pl->scan, at, insn.length))
            return PK_NOJUMP_TARGET; /* not the stream s (or recursive descent) is in */
        const char *why;
        bool moves = !site || pl->opts->passthrough;
        bool looked_up = moves && pl->flow && pk_flow_is_looked_up(pl->flow, at, at + insn.length);
        if (moves && pl->flow && pk_flow_is_anchored(pl->flow, at, at + insn.length))
            return PK_NOJUMP_PINNED;
        if (looked_up && !monitor)
            return PK_NOJUMP_PINNED; /* a fault would be found at the trampoline's address */
        if (site) {
            sp->nsites++;
            if (pl->opts->passthrough && !pk_relocatable(&insn, at, r->bits, &why))
                return PK_NOJUMP_RELOCATE;
        } else if (is_endbr(&insn)) {
            return PK_NOJUMP_ENDBR;
        } else if (insn.meta.category == ZYDIS_CATEGORY_INTERRUPT) {
            return PK_NOJUMP_TRAP;
        } else if (pk_call_can_end_jump(&insn, r->bits) &&
                   !(pl->img->x86_features & GNU_PROPERTY_X86_FEATURE_1_SHSTK)) {
            if (at + insn.length < need)
                return PK_NOJUMP_RELOCATE; /* its return address would be in the trampoline */
            if (looked_up)
                return PK_NOJUMP_PINNED; /* it becomes several: no one counterpart faults */
        } else if (!pk_relocatable(&insn, at, r->bits, &why) ||
                   insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL) {
            /* (SYSCALL leaves its return address in RCX. A passthrough table's
             * SYSCALL sites run in trampolines all the same: the point.) */
            return PK_NOJUMP_RELOCATE;
        }
        if (reads_range(&insn, ops, at, start, need))
            return PK_NOJUMP_TARGET; /* it would read the jump, not itself */
        starts[nstarts++] = at;
        at += insn.length;
        if (at < need && pk_insn_ends_path(&insn)) {
            /* Nothing falls through a near RET or JMP to the bytes left; they
             * are dead when no branch lands there (checked below) and no
             * site is among them. Not after a site or a far transfer: those
             * often continue at the next byte, reached by an address
             * computed at run time (push %eax; lret). */
            size_t next = i + sp->nsites;
            if (site || insn.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR ||
                (insn.meta.category != ZYDIS_CATEGORY_RET &&
                 insn.meta.category != ZYDIS_CATEGORY_UNCOND_BR) ||
                at <= s->vaddr || (next < pl->nsel && pl->sel[next]->vaddr < need))
                return PK_NOJUMP_SHORT;
            if (pl->flow && (pk_flow_is_anchored(pl->flow, at, need) ||
                             pk_flow_is_looked_up(pl->flow, at, need)))
                return PK_NOJUMP_PINNED;
            at = need;
        }
    }
    sp->end = at;
    if (pl->flow && pk_flow_is_pinned(pl->flow, sp->site, sp->end))
        return PK_NOJUMP_PINNED;
    if (pk_scan_has_target(pl->scan, sp->site + 1, sp->end) ||
        (pl->flow && pk_flow_has_target(pl->flow, sp->site + 1, sp->end)))
        return PK_NOJUMP_TARGET;
    /* Where a kernel resumes after an exception table lookup: a monitor
     * sends it to the counterpart of an instruction copied whole, so not
     * into one, nor into the dead bytes after a RET or JMP (copied: none). */
    for (size_t k = 0; pl->flow && k < nstarts; k++) {
        uint64_t lo = monitor ? starts[k] + 1 : sp->site + 1;
        uint64_t hi = monitor && k + 1 < nstarts ? starts[k + 1] : sp->end;
        if (pk_flow_has_resume(pl->flow, lo, hi))
            return PK_NOJUMP_TARGET;
    }
    /* Where a jump table's targets are unknown, nothing moves in its
     * function, or, where functions are not known, in its region. */
    pk_range fn = { r->vaddr, r->vaddr + r->size };
    bool known_fn = pl->flow && pk_flow_function_at(pl->flow, s->vaddr, &fn);
    if (pk_any_in(pl->scan->opaque_jumps, pl->scan->nopaque_jumps, fn.lo, fn.hi)) {
        if (!known_fn || !known_tables(pl, fn, r))
            return PK_NOJUMP_OPAQUE;
        if (pk_any_in(pl->sw->cases, pl->sw->ncases, sp->site + 1, sp->end))
            return PK_NOJUMP_TARGET;
    }
    return PK_NOJUMP_COUNT;
}

/* Decides whether a jump can replace sel[i]: one starting at it, or else at
 * one of the instructions right before it, no lower than floor (where the
 * previous patch ends). Returns the reason the jump at the site itself
 * could not be, when none can. */
static pk_nojump jump_span(const planner *pl, size_t i, uint64_t floor, span *sp)
{
    const pk_site *s = pl->sel[i];
    const pk_region *r = &pl->img->regions[s->region];
    if (r->bits != 32 && r->bits != 64)
        return PK_NOJUMP_MODE;
    if (pk_image_alt_at(pl->img, s->vaddr))
        return PK_NOJUMP_ALTERNATIVE;
    pk_nojump why = jump_from(pl, i, s->vaddr, 0, sp);
    if (why == PK_NOJUMP_COUNT || why == PK_NOJUMP_OPAQUE)
        return why;
    uint64_t before[MAX_BEFORE];
    size_t n = starts_before(pl, s, floor, before);
    for (size_t k = 0; k < n && s->vaddr + s->len - before[k] <= PK_JUMP_MAX_LEN; k++)
        if (jump_from(pl, i, before[k], 0, sp) == PK_NOJUMP_COUNT)
            return PK_NOJUMP_COUNT;
    return why;
}

/* ---- the plan ----------------------------------------------------------------------- */

static void add_patch(pk_plan *plan, const pk_site *s, pk_tactic tactic)
{
    pk_patch *p = &plan->table.patches[plan->table.count++];
    *p = (pk_patch){ .site = s->vaddr, .len = s->len, .cls = (pk_class_id)s->cls,
                     .tactic = tactic };
    memcpy(p->bytes, s->bytes, s->len);
}

/* Adds the jump over sp with its trampoline at *code_end, if the
 * trampoline can be made and reached; returns why not otherwise. */
static pk_nojump add_jump(const planner *pl, const span *sp, pk_plan *plan, uint64_t *code_end,
                          pk_error *err, pk_status *status)
{
    const pk_region *r = &pl->img->regions[pl->sel[sp->first]->region];
    uint64_t t = *code_end;
    /* Addresses wrap: a monitor may lay trampolines out below a file's
     * first address (at "negative" addresses), which a rel32 reaches all
     * the same. */
    int64_t d = (int64_t)(t - sp->site);
    uint64_t far = d < 0 ? -(uint64_t)d : (uint64_t)d;
    if (r->bits == 64 && far >= ((uint64_t)1 << 31) - 4096)
        return PK_NOJUMP_REACH;
    pk_jump *j = &plan->table.jumps[plan->table.njumps];
    *j = (pk_jump){ .site = sp->site, .trampoline = t, .len = (uint8_t)(sp->end - sp->site) };
    memcpy(j->bytes, r->bytes + (sp->site - r->vaddr), j->len);
    size_t first = plan->table.count;
    for (size_t k = 0; k < sp->nsites; k++) {
        const pk_site *s = pl->sel[sp->first + k];
        add_patch(plan, s, sp->nsites == 1 && s->len == j->len ? PK_TACTIC_JMP
                                                                : PK_TACTIC_JMP_DISPLACED);
    }
    size_t len;
    pk_error why;
    pk_status s = pk_trampoline_emit(j, &plan->table.patches[first], sp->nsites, r->bits,
                                     plan->table.flags, plan->table.vcpu_page, NULL, &len, &why);
    if (s == PK_OK && len > UINT16_MAX)
        s = PK_ERR_UNSUPPORTED;
    if (s != PK_OK) {
        plan->table.count = first;
        if (s != PK_ERR_UNSUPPORTED) /* the plan is wrong, not the code */
            *status = pk_fail(err, s, "trampoline for 0x%llx: %s",
                              (unsigned long long)sp->site, why.msg);
        return PK_NOJUMP_RELOCATE;
    }
    j->trampoline_len = (uint16_t)len;
    plan->table.njumps++;
    *code_end = t + len;
    return PK_NOJUMP_COUNT;
}

/* Where no jump of its own fits site sel[i], the jump planned just before
 * it may grow to cover it (an IRET right after a segment load's jump, say):
 * replans *last that way and returns true, or leaves it as it was. */
static bool extend_last_jump(const planner *pl, span *last, size_t i, pk_plan *plan,
                             uint64_t *code_end, pk_error *err, pk_status *status)
{
    const pk_site *s = pl->sel[i];
    span grown;
    if (jump_from(pl, last->first, last->site, s->vaddr + s->len, &grown) != PK_NOJUMP_COUNT ||
        grown.first + grown.nsites <= i)
        return false;
    pk_jump *j = &plan->table.jumps[--plan->table.njumps];
    plan->table.count -= last->nsites;
    *code_end = j->trampoline;
    if (add_jump(pl, &grown, plan, code_end, err, status) == PK_NOJUMP_COUNT) {
        *last = grown;
        return true;
    }
    if (*status == PK_OK)
        add_jump(pl, last, plan, code_end, err, status); /* it fitted before */
    return false;
}

/* The patches inside jump j: moves *p (where the previous jump's began:
 * jumps are visited in order) to the first, returns how many there are. */
static size_t jump_sites(const pk_patch_table *t, const pk_jump *j, size_t *p)
{
    while (*p < t->count && t->patches[*p].site < j->site)
        ++*p;
    size_t n = 0;
    while (*p + n < t->count && t->patches[*p + n].site < j->site + j->len)
        n++;
    return n;
}

/* Emits every trampoline into plan->code. */
static pk_status emit_trampolines(pk_plan *plan, pk_error *err)
{
    if (!plan->table.njumps)
        return PK_OK;
    const pk_jump *last = &plan->table.jumps[plan->table.njumps - 1];
    plan->code_len = last->trampoline + last->trampoline_len - plan->code_vaddr;
    if (!(plan->code = malloc(plan->code_len)))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    size_t p = 0;
    for (size_t i = 0; i < plan->table.njumps; i++) {
        const pk_jump *j = &plan->table.jumps[i];
        size_t n = jump_sites(&plan->table, j, &p), len;
        PK_CHECK(pk_trampoline_emit(j, &plan->table.patches[p], n, plan->table.bits,
                                    plan->table.flags, plan->table.vcpu_page,
                                    plan->code + (j->trampoline - plan->code_vaddr), &len, err));
    }
    return PK_OK;
}

pk_status pk_patch_plan(const pk_image *img, const pk_scan *scan, const pk_flow *flow,
                        uint64_t code_vaddr, const pk_plan_options *opts, pk_plan *plan,
                        pk_error *err)
{
    memset(plan, 0, sizeof *plan);
    if (opts->passthrough && opts->tactic == PK_CHOOSE_INT3)
        return pk_fail(err, PK_ERR_USAGE, "passthrough needs jumps: not with the int3 tactic");
    if (opts->passthrough && opts->vcpu_page)
        return pk_fail(err, PK_ERR_USAGE, "passthrough runs each site itself: no fast path");
    if (opts->tactic != PK_CHOOSE_INT3 && !scan->targets)
        return pk_fail(err, PK_ERR_USAGE, "jumps need a scan made with the flow option");
    switches sw = { 0 };
    planner pl = { .img = img, .scan = scan, .flow = flow, .opts = opts, .sw = &sw };
    size_t cap = scan->nsites ? scan->nsites : 1;
    pl.sel = calloc(cap, sizeof *pl.sel);
    plan->skips = calloc(cap, sizeof *plan->skips);
    plan->table.patches = calloc(cap, sizeof *plan->table.patches);
    plan->table.jumps = calloc(cap, sizeof *plan->table.jumps);
    pk_status status = PK_OK;
    if (!pl.sel || !plan->skips || !plan->table.patches || !plan->table.jumps)
        status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    if (status == PK_OK && (!pk_decoder_init(&pl.decoder[0], 32, false) ||
                            !pk_decoder_init(&pl.decoder[1], 64, false)))
        status = pk_fail(err, PK_ERR_INTERNAL, "cannot set up the Zydis decoder");
    if (status == PK_OK)
        status = select_sites(scan, opts, pl.sel, &pl.nsel, plan, err);
    plan->table.bits = img->nregions ? img->regions[0].bits : 64;
    plan->table.flags = (opts->passthrough ? PK_TABLE_PASSTHROUGH : 0) |
                        (opts->vcpu_page && opts->user ? PK_TABLE_USER : 0);
    plan->table.vcpu_page = opts->vcpu_page;
    plan->code_vaddr = code_vaddr;
    uint64_t code_end = code_vaddr, floor = 0;
    span last = { 0 };          /* the jump planned last, while nothing follows it */
    for (size_t i = 0; i < pl.nsel && status == PK_OK;) {
        const pk_site *s = pl.sel[i];
        if (i && pl.sel[i - 1]->region != s->region)
            floor = 0, last.nsites = 0;
        span sp;
        pk_nojump why = opts->tactic == PK_CHOOSE_INT3 ? PK_NOJUMP_CHOSEN
                                                       : jump_span(&pl, i, floor, &sp);
        if (why == PK_NOJUMP_COUNT)
            why = add_jump(&pl, &sp, plan, &code_end, err, &status);
        if (why != PK_NOJUMP_COUNT && status == PK_OK && last.nsites &&
            s->vaddr + s->len - last.site <= PK_JUMP_MAX_LEN &&
            extend_last_jump(&pl, &last, i, plan, &code_end, err, &status))
            sp = last, why = PK_NOJUMP_COUNT;
        if (why == PK_NOJUMP_COUNT) {
            i = sp.first + sp.nsites;
            floor = sp.end;
            last = sp;
            continue;
        }
        last.nsites = 0;
        i++;
        floor = s->vaddr + s->len;
        if (opts->tactic == PK_CHOOSE_JMP && !opts->allow_skip) {
            status = pk_fail(err, PK_ERR_UNSUPPORTED,
                             "no jump fits the site at 0x%llx (%s): %s; --allow-skip leaves it "
                             "out", (unsigned long long)s->vaddr, pk_class_get(s->cls)->key,
                             pk_nojump_reason(why));
        } else if (opts->tactic == PK_CHOOSE_JMP || opts->passthrough) {
            plan->nojump[why]++;
            plan->skips[plan->nskips++] = (pk_skip){ s->vaddr, (pk_class_id)s->cls,
                                                     pk_nojump_reason(why) };
        } else {
            plan->nojump[why]++;
            add_patch(plan, s, PK_TACTIC_INT3);
        }
    }
    /* A kernel's exception tables reach into these jumps: they work only
     * under a monitor that maps returns into them and faults out of them. */
    for (size_t k = 0; flow && k < plan->table.njumps; k++) {
        const pk_jump *j = &plan->table.jumps[k];
        if (pk_flow_has_resume(flow, j->site + 1, j->site + j->len) ||
            pk_flow_is_looked_up(flow, j->site, j->site + j->len))
            plan->table.flags |= PK_TABLE_MAPPED;
    }
    free(pl.sel);
    free(sw.fns);
    free(sw.cases);
    if (status == PK_OK && sw.oom)
        status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    if (status == PK_OK)
        status = emit_trampolines(plan, err);
    if (status != PK_OK)
        pk_plan_free(plan);
    return status;
}

void pk_plan_free(pk_plan *plan)
{
    pk_patch_table_free(&plan->table);
    free(plan->code);
    free(plan->skips);
    memset(plan, 0, sizeof *plan);
}

/* ---- writing ----------------------------------------------------------------------- */

typedef struct file_code {
    const pk_image *img;
    uint8_t *file;
} file_code;

/* pk_code_at over the grown file: the image's regions, at their offsets,
 * where an executable segment maps those very bytes (a section's offset
 * could say otherwise, and the patch would land elsewhere than the code
 * that runs). */
static uint8_t *file_code_at(void *ctx, uint64_t addr, size_t len)
{
    const file_code *fc = ctx;
    const pk_region *r = pk_image_region_at(fc->img, addr);
    if (!r || len > r->size - (addr - r->vaddr))
        return NULL;
    uint64_t off = r->offset + (addr - r->vaddr);
    if (pk_elf_loaded_bytes(fc->img->data, fc->img->data_len, addr, len, true) !=
        fc->img->data + off)
        return NULL;
    return fc->file + off;
}

pk_status pk_patch_write_elf(const pk_image *img, const pk_plan *plan, uint8_t **out,
                             size_t *len, pk_error *err)
{
    *out = NULL;
    *len = 0;
    if (img->kind != PK_IMAGE_ELF)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "only ELF files can be patched (a bzImage: popek extract it first)");
    if (img->is_patched)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "already patched by popek (%zu patches)",
                       img->patched.count);
    const pk_patch_table *t = &plan->table;
    /* 32-bit blocks address the page absolutely: right only where the file
     * loads at its own addresses. */
    if (t->vcpu_page && t->bits == 32 && img->data_len > 17 && img->data[16] == 3 /* ET_DYN */)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no fast path for 32-bit position-independent "
                       "code: its trampolines address the vcpu page absolutely");
    uint8_t *encoded;
    size_t encoded_len;
    PK_CHECK(pk_patch_table_encode(t, &encoded, &encoded_len, err));
    pk_elf_growth g;
    pk_status s = pk_elf_grow(img->data, img->data_len, encoded, encoded_len, plan->code,
                              plan->code_len, t->vcpu_page != 0, &g, err);
    free(encoded);
    if (s != PK_OK)
        return s;
    if (plan->code_len && g.code_vaddr != plan->code_vaddr)
        s = pk_fail(err, PK_ERR_USAGE, "trampolines made for 0x%llx, the file has code at 0x%llx",
                    (unsigned long long)plan->code_vaddr, (unsigned long long)g.code_vaddr);
    else if (g.vcpu_page != t->vcpu_page)
        s = pk_fail(err, PK_ERR_USAGE, "trampolines made for a vcpu page at 0x%llx, the file "
                    "has it at 0x%llx", (unsigned long long)t->vcpu_page,
                    (unsigned long long)g.vcpu_page);
    file_code fc = { img, g.data };
    for (size_t i = 0; i < t->count && s == PK_OK; i++) {
        uint8_t *at = file_code_at(&fc, t->patches[i].site, t->patches[i].len);
        if (!at)
            s = pk_fail(err, PK_ERR_UNSUPPORTED,
                        "patch at 0x%llx is not in code a segment loads there",
                        (unsigned long long)t->patches[i].site);
        else if (t->patches[i].tactic == PK_TACTIC_INT3)
            at[0] = 0xCC;
    }
    for (size_t i = 0; i < t->njumps && s == PK_OK; i++) {
        const pk_jump *j = &t->jumps[i];
        uint8_t *at = file_code_at(&fc, j->site, j->len);
        s = at ? pk_jump_emit(j, t->bits, at, err)
               : pk_fail(err, PK_ERR_UNSUPPORTED,
                         "jump at 0x%llx is not in code a segment loads there",
                         (unsigned long long)j->site);
    }
    /* What was written is what the table says. */
    if (s == PK_OK)
        s = pk_patch_table_check_code(t, file_code_at, &fc, err);
    if (s != PK_OK) {
        free(g.data);
        return s;
    }
    *out = g.data;
    *len = g.len;
    return PK_OK;
}

/* ---- verifying ----------------------------------------------------------------------- */

pk_status pk_patch_verify(const pk_image *img, pk_error *err)
{
    if (!img->is_patched)
        return pk_fail(err, PK_ERR_USAGE, "not patched by popek");
    const pk_patch_table *t = &img->patched;
    size_t p = 0;
    for (size_t i = 0; i < t->njumps; i++) {
        const pk_jump *j = &t->jumps[i];
        /* popek lays trampolines out in the order of their jumps, apart from
         * the code they patch: anything else could share or hide bytes. */
        if (i && j->trampoline < t->jumps[i - 1].trampoline + t->jumps[i - 1].trampoline_len)
            return pk_fail(err, PK_ERR_FORMAT, "the trampoline of 0x%llx does not follow that "
                           "of 0x%llx", (unsigned long long)j->site,
                           (unsigned long long)t->jumps[i - 1].site);
        for (size_t r = 0; r < img->nregions; r++)
            if (j->trampoline < img->regions[r].vaddr + img->regions[r].size &&
                j->trampoline + j->trampoline_len > img->regions[r].vaddr)
                return pk_fail(err, PK_ERR_FORMAT, "the trampoline of 0x%llx lies in %s",
                               (unsigned long long)j->site, img->regions[r].name);
        const uint8_t *code = pk_elf_loaded_bytes(img->data, img->data_len, j->trampoline,
                                                  j->trampoline_len, true);
        if (!code)
            return pk_fail(err, PK_ERR_FORMAT,
                           "the trampoline of 0x%llx (0x%llx, %u bytes) is not in an "
                           "executable segment", (unsigned long long)j->site,
                           (unsigned long long)j->trampoline, j->trampoline_len);
        size_t n = jump_sites(t, j, &p);
        PK_CHECK(pk_trampoline_check(j, &t->patches[p], n, t->bits, t->flags, t->vcpu_page,
                                     code, j->trampoline_len, NULL, err));
    }
    return PK_OK;
}

pk_status pk_patch_table_counterparts(const pk_patch_table *t, pk_code_at at, void *ctx,
                                      uint64_t (*out)[PK_JUMP_MAX_LEN], pk_error *err)
{
    size_t p = 0;
    for (size_t i = 0; i < t->njumps; i++) {
        const pk_jump *j = &t->jumps[i];
        const uint8_t *code = at(ctx, j->trampoline, j->trampoline_len);
        if (!code)
            return pk_fail(err, PK_ERR_FORMAT, "the trampoline of 0x%llx (0x%llx, %u bytes) is "
                           "not there", (unsigned long long)j->site,
                           (unsigned long long)j->trampoline, j->trampoline_len);
        size_t n = jump_sites(t, j, &p);
        PK_CHECK(pk_trampoline_check(j, &t->patches[p], n, t->bits, t->flags, t->vcpu_page,
                                     code, j->trampoline_len, out[i], err));
    }
    return PK_OK;
}
