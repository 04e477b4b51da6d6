/* popek — guest code pages: scanned before they run, patched, watched.
 *
 * The guest image's code is scanned once, as a whole, at boot: both sweeps,
 * with its symbols, so sites are found as `popek patch` finds them. Code
 * that appears later (written by the guest, or in a page the image did not
 * mark as code) is scanned a page at a time when it first executes, by a
 * linear sweep from where the guest jumped in and another of what lies
 * before it on the page; a page of the image's code scanned again after a
 * write is swept only where the image's code sections cover it. A jump
 * into the middle of an instruction the sweeps decoded differently is the
 * blind spot every scan-and-patch design has; the seccomp sandbox still
 * keeps such code from the host. */
#include "internal/codepages.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "popek/fastpath.h"
#include "popek/flow.h"
#include "popek/scan.h"
#include "popek/trampoline.h"
#include "../scanner/internal/decoder.h"

static uint64_t int3_address(const pk_patch *p)
{
    return p->tactic == PK_TACTIC_INT3 ? p->site : p->trampoline;
}

/* The index of the first patch whose INT3 address is at least addr. */
static size_t lower_bound(const pk_codepages *cp, uint64_t addr)
{
    size_t lo = 0, hi = cp->npatches;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (int3_address(&cp->patches[mid]) < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const pk_patch *pk_codepages_patch_at(const pk_codepages *cp, uint64_t addr)
{
    size_t i = lower_bound(cp, addr);
    return i < cp->npatches && int3_address(&cp->patches[i]) == addr ? &cp->patches[i] : NULL;
}

static bool in_ram(const pk_codepages *cp, uint64_t addr, uint64_t len)
{
    return pk_tracee_holds(cp->tracee, addr, len);
}

bool pk_codepages_read_original(const pk_codepages *cp, uint64_t addr, uint8_t *buf, size_t len)
{
    if (!in_ram(cp, addr, len))
        return false;
    memcpy(buf, cp->tracee->ram + addr, len);
    for (size_t i = lower_bound(cp, addr); i < cp->npatches; i++) {
        const pk_patch *p = &cp->patches[i];
        if (int3_address(p) >= addr + len)
            break;
        if (p->tactic == PK_TACTIC_INT3)
            buf[p->site - addr] = p->bytes[0];
    }
    return true;
}

bool pk_codepages_is_code(const pk_codepages *cp, uint64_t addr)
{
    uint64_t page = addr / PK_GUEST_PAGE;
    return page < cp->npages && cp->is_code[page];
}

/* Gives pages [first, last] the protection of their new state. */
static pk_status set_pages(pk_codepages *cp, uint64_t first, uint64_t last, bool code,
                           pk_error *err)
{
    uint64_t lo = first * PK_GUEST_PAGE, hi = (last + 1) * PK_GUEST_PAGE;
    if (lo < cp->tracee->ram_low)
        lo = cp->tracee->ram_low;
    if (lo >= hi)
        return PK_OK;
    int prot = code ? PROT_READ | PROT_EXEC : PROT_READ | PROT_WRITE;
    PK_CHECK(pk_tracee_protect(cp->tracee, lo, hi - lo, prot, err));
    memset(cp->is_code + first, code, last - first + 1);
    return PK_OK;
}

pk_status pk_codepages_init(pk_codepages *cp, pk_tracee *t, unsigned bits, unsigned sets,
                            const bool *only, bool patching, pk_error *err)
{
    memset(cp, 0, sizeof *cp);
    cp->tracee = t;
    cp->bits = bits;
    cp->sets = sets ? sets : PK_SET_PG;
    cp->only = only;
    cp->patching = patching;
    cp->npages = t->ram_size / PK_GUEST_PAGE;
    cp->is_code = calloc(cp->npages, 1);
    if (!cp->is_code)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    if (!patching)
        return pk_tracee_protect(t, t->ram_low, t->ram_size - t->ram_low,
                                 PROT_READ | PROT_WRITE | PROT_EXEC, err);
    return PK_OK;
}

void pk_codepages_free(pk_codepages *cp)
{
    free(cp->is_code);
    free(cp->patches);
    free(cp->jumps);
    free(cp->counterparts);
    free(cp->regions);
    memset(cp, 0, sizeof *cp);
}

/* Adds a patch and writes its INT3 (the INT3 of a jump patch is in its
 * trampoline, which the file holds). Keeps the array sorted. */
static pk_status add_patch(pk_codepages *cp, const pk_patch *p, pk_error *err)
{
    if (p->tactic == PK_TACTIC_INT3 ? !in_ram(cp, p->site, p->len) : !in_ram(cp, p->trampoline, 1))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "the patch of 0x%llx lies outside guest RAM",
                       (unsigned long long)p->site);
    if (cp->npatches == cp->cap) {
        size_t cap = cp->cap ? 2 * cp->cap : 64;
        pk_patch *grown = realloc(cp->patches, cap * sizeof *grown);
        if (!grown)
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
        cp->patches = grown;
        cp->cap = cap;
    }
    size_t i = lower_bound(cp, int3_address(p));
    if (i < cp->npatches && int3_address(&cp->patches[i]) == int3_address(p))
        return PK_OK; /* patched already */
    memmove(cp->patches + i + 1, cp->patches + i, (cp->npatches - i) * sizeof *p);
    cp->patches[i] = *p;
    cp->npatches++;
    if (p->tactic == PK_TACTIC_INT3)
        cp->tracee->ram[p->site] = 0xCC;
    return PK_OK;
}

static void drop_patch(pk_codepages *cp, size_t i)
{
    memmove(cp->patches + i, cp->patches + i + 1, (cp->npatches - i - 1) * sizeof *cp->patches);
    cp->npatches--;
}

/* Guest RAM as a pk_code_at. */
static uint8_t *ram_at(void *ctx, uint64_t addr, size_t len)
{
    pk_codepages *cp = ctx;
    return in_ram(cp, addr, len) ? cp->tracee->ram + addr : NULL;
}

static pk_status keep_counterparts(pk_codepages *cp, const pk_patch_table *t, pk_error *err)
{
    if (!t->njumps)
        return PK_OK;
    cp->jumps = malloc(t->njumps * sizeof *cp->jumps);
    cp->counterparts = malloc(t->njumps * sizeof *cp->counterparts);
    if (!cp->jumps || !cp->counterparts)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    memcpy(cp->jumps, t->jumps, t->njumps * sizeof *cp->jumps);
    cp->njumps = t->njumps;
    return pk_patch_table_counterparts(t, ram_at, cp, cp->counterparts, err);
}

uint64_t pk_codepages_resume_at(const pk_codepages *cp, uint64_t addr)
{
    size_t lo = 0, hi = cp->njumps;
    while (lo < hi) { /* the last jump that starts at or before addr */
        size_t mid = lo + (hi - lo) / 2;
        if (cp->jumps[mid].site <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return addr;
    const pk_jump *j = &cp->jumps[lo - 1];
    uint64_t off = addr - j->site;
    if (off == 0 || off >= j->len || !cp->counterparts[lo - 1][off])
        return addr;
    return cp->counterparts[lo - 1][off];
}

/* The index of the jump whose trampoline holds addr, or -1. */
static ptrdiff_t trampoline_at(const pk_codepages *cp, uint64_t addr)
{
    size_t lo = 0, hi = cp->njumps;
    while (lo < hi) { /* trampolines follow in the order of their jumps */
        size_t mid = lo + (hi - lo) / 2;
        if (cp->jumps[mid].trampoline <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || addr >= cp->jumps[lo - 1].trampoline + cp->jumps[lo - 1].trampoline_len)
        return -1;
    return (ptrdiff_t)lo - 1;
}

uint64_t pk_codepages_original_of(const pk_codepages *cp, uint64_t addr)
{
    ptrdiff_t i = trampoline_at(cp, addr);
    for (unsigned off = 0; i >= 0 && off < cp->jumps[i].len; off++)
        if (cp->counterparts[i][off] == addr)
            return cp->jumps[i].site + off;
    return addr;
}

bool pk_codepages_between(const pk_codepages *cp, uint64_t addr)
{
    ptrdiff_t i = trampoline_at(cp, addr);
    if (i < 0 || pk_codepages_original_of(cp, addr) != addr ||
        pk_codepages_patch_at(cp, addr))
        return true;
    const pk_jump *j = &cp->jumps[i];
    return addr == j->trampoline + j->trampoline_len - 5; /* the jmp rel32 back */
}

bool pk_codepages_after_sti(const pk_codepages *cp, uint64_t addr)
{
    if (!cp->vcpu_page)
        return false;
    /* The block's end jumps over its INT3 (2 bytes) to the next instruction. */
    const pk_patch *p = pk_codepages_patch_at(cp, addr - 1);
    if (!p)
        p = pk_codepages_patch_at(cp, addr + 2);
    return p && p->cls == PK_CLASS_STI && p->tactic != PK_TACTIC_INT3;
}

/* Guest RAM as pk_guest_mem reads it. */
static bool ram_read(void *ctx, uint64_t addr, void *buf, size_t size)
{
    const pk_codepages *cp = ctx;
    if (!in_ram(cp, addr, size))
        return false;
    memcpy(buf, cp->tracee->ram + addr, size);
    return true;
}

bool pk_codepages_unwind(const pk_codepages *cp, pk_regs *regs)
{
    uint64_t rip = regs->rip;
    ptrdiff_t i = trampoline_at(cp, rip);
    if (i < 0 || !cp->vcpu_page)
        return false;
    /* The block ends at its site's INT3: the first INT3 after rip. */
    size_t k = lower_bound(cp, rip + 1);
    if (k == cp->npatches)
        return false;
    const pk_patch *p = &cp->patches[k];
    const pk_jump *j = &cp->jumps[i];
    if (p->site < j->site || p->site >= j->site + j->len)
        return false;
    uint64_t block = cp->counterparts[i][p->site - j->site];
    pk_guest_mem ram = { (void *)cp, ram_read, NULL };
    return block <= rip &&
           pk_fastpath_undo(p, cp->bits, false, block, cp->vcpu_page, regs, &ram);
}

/* Remembers a code region of the image, for rescans of its pages. */
static pk_status keep_region(pk_codepages *cp, uint64_t vaddr, uint64_t size, pk_error *err)
{
    pk_range *grown = realloc(cp->regions, (cp->nregions + 1) * sizeof *grown);
    if (!grown)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    cp->regions = grown;
    cp->regions[cp->nregions++] = (pk_range){ vaddr, vaddr + size };
    return PK_OK;
}

pk_status pk_codepages_load_image(pk_codepages *cp, const pk_image *img, pk_error *err)
{
    if (!cp->patching)
        return PK_OK;
    if (img->is_patched) {
        /* Loading the image put the original bytes back (so that it scans
         * as before patching); the guest runs the patched ones. */
        const pk_patch_table *t = &img->patched;
        for (size_t i = 0; i < t->njumps; i++) {
            const pk_jump *j = &t->jumps[i];
            if (!in_ram(cp, j->site, j->len))
                return pk_fail(err, PK_ERR_UNSUPPORTED, "jump 0x%llx lies outside guest RAM",
                               (unsigned long long)j->site);
            PK_CHECK(pk_jump_emit(j, t->bits, cp->tracee->ram + j->site, err));
        }
        for (size_t i = 0; i < t->count; i++)
            PK_CHECK(add_patch(cp, &t->patches[i], err));
        PK_CHECK(keep_counterparts(cp, t, err));
        cp->vcpu_page = t->vcpu_page;
    } else {
        pk_scan_options so = { .sets = cp->sets, .only = cp->only, .flow = true };
        pk_plan_options po = { .tactic = PK_CHOOSE_INT3, .allow_skip = true, .only = cp->only };
        pk_scan scan = { 0 };
        pk_plan plan = { 0 };
        pk_status s = pk_scan_image(img, &so, &scan, err);
        if (s == PK_OK)
            s = pk_patch_plan(img, &scan, NULL, 0, &po, &plan, err);
        for (size_t i = 0; s == PK_OK && i < plan.table.count; i++)
            s = add_patch(cp, &plan.table.patches[i], err);
        pk_plan_free(&plan);
        pk_scan_free(&scan);
        PK_CHECK(s);
    }
    for (size_t r = 0; r < img->nregions; r++) {
        const pk_region *region = &img->regions[r];
        if (!region->size || !in_ram(cp, region->vaddr, region->size))
            continue;
        PK_CHECK(keep_region(cp, region->vaddr, region->size, err));
        PK_CHECK(set_pages(cp, region->vaddr / PK_GUEST_PAGE,
                           (region->vaddr + region->size - 1) / PK_GUEST_PAGE, true, err));
    }
    /* A patched file's trampolines lie in a segment of their own. */
    for (size_t i = 0; i < img->patched.njumps; i++) {
        const pk_jump *j = &img->patched.jumps[i];
        if (in_ram(cp, j->trampoline, j->trampoline_len))
            PK_CHECK(set_pages(cp, j->trampoline / PK_GUEST_PAGE,
                               (j->trampoline + j->trampoline_len - 1) / PK_GUEST_PAGE, true, err));
    }
    return PK_OK;
}

/* Sweeps [from, decode_end) and patches the sites that start before
 * keep_end or, with whole, also end by it. */
static pk_status sweep(pk_codepages *cp, uint64_t from, uint64_t decode_end, uint64_t keep_end,
                       bool whole, pk_error *err)
{
    uint8_t buf[PK_GUEST_PAGE + 16];
    size_t len = (size_t)(decode_end - from);
    if (len == 0)
        return PK_OK;
    if (!pk_codepages_read_original(cp, from, buf, len))
        return pk_fail(err, PK_ERR_INTERNAL, "sweep outside RAM");
    pk_image img;
    PK_CHECK(pk_image_load_raw_memory(&img, buf, len, "guest page", cp->bits, from, err));
    pk_scan_options so = { .sets = cp->sets, .only = cp->only, .sweeps = PK_FOUND_LINEAR,
                           .threads = 1 };
    pk_scan scan = { 0 };
    pk_status s = pk_scan_image(&img, &so, &scan, err);
    for (size_t i = 0; s == PK_OK && i < scan.nsites; i++) {
        const pk_site *site = &scan.sites[i];
        const pk_class *c = pk_class_get((pk_class_id)site->cls);
        if (site->vaddr >= keep_end || (whole && site->vaddr + site->len > keep_end) ||
            ((c->flags & PK_CLASS_OPT_IN) && !(cp->only && cp->only[c->id])))
            continue;
        pk_patch p = { .site = site->vaddr, .len = site->len, .cls = (pk_class_id)site->cls,
                       .tactic = PK_TACTIC_INT3 };
        memcpy(p.bytes, site->bytes, site->len);
        s = add_patch(cp, &p, err);
    }
    pk_scan_free(&scan);
    pk_image_free(&img);
    return s;
}

/* A page of the image's code, scanned again after a write: only the parts
 * of it the image's code sections cover are swept (the rest is the
 * sections' neighbours, .rodata as a rule, whose bytes a sweep would
 * mistake for code). *any says whether the page holds any of them. */
static pk_status sweep_image_code(pk_codepages *cp, uint64_t start, uint64_t end, uint64_t tail,
                                  uint64_t entry, bool *any, pk_error *err)
{
    *any = false;
    for (size_t i = 0; i < cp->nregions; i++) {
        const pk_range *r = &cp->regions[i];
        if (r->hi <= start || r->lo >= end)
            continue;
        *any = true;
        /* A section that began on an earlier page enters this one at an
         * instruction boundary the sweep does not know: from the page's
         * start, the best it can do. */
        uint64_t lo = r->lo > start ? r->lo : start, hi = r->hi < entry ? r->hi : entry;
        if (lo < hi)
            PK_CHECK(sweep(cp, lo, tail < r->hi ? tail : r->hi, hi, true, err));
    }
    return PK_OK;
}

/* Where the instruction at rip ends, when it starts before page_start and
 * crosses into that page (the fetch of its tail faulted); else page_start. */
static uint64_t first_boundary(const pk_codepages *cp, uint64_t rip, uint64_t page_start)
{
    uint8_t bytes[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    if (rip >= page_start || page_start - rip >= ZYDIS_MAX_INSTRUCTION_LENGTH ||
        !pk_codepages_read_original(cp, rip, bytes, sizeof bytes))
        return page_start;
    if (!pk_decoder_init(&dec, cp->bits, false) ||
        ZYAN_FAILED(ZydisDecoderDecodeInstruction(&dec, NULL, bytes, sizeof bytes, &insn)) ||
        rip + insn.length <= page_start)
        return page_start;
    return rip + insn.length;
}

pk_status pk_codepages_execute(pk_codepages *cp, uint64_t addr, uint64_t rip, pk_error *err)
{
    uint64_t page = addr / PK_GUEST_PAGE, start = page * PK_GUEST_PAGE, end = start + PK_GUEST_PAGE;
    if (!cp->patching || page >= cp->npages || start < cp->tracee->ram_low)
        return pk_fail(err, PK_ERR_INTERNAL, "execute fault at 0x%llx outside patchable RAM",
                       (unsigned long long)addr);
    /* Where the guest entered the page is an instruction for certain: the
     * sweep from there wins; the one from the page's start (or from the end
     * of an instruction crossing into it) keeps only what lies wholly
     * before. Decode up to 15 bytes past the page, for an instruction that
     * ends there. */
    uint64_t tail = end + 15 <= cp->tracee->ram_size ? end + 15 : cp->tracee->ram_size;
    uint64_t entry = rip > start && rip < end ? rip : end;
    bool image_code;
    PK_CHECK(sweep_image_code(cp, start, end, tail, entry, &image_code, err));
    if (!image_code)
        PK_CHECK(sweep(cp, first_boundary(cp, rip, start), tail, entry, true, err));
    if (entry < end)
        PK_CHECK(sweep(cp, entry, tail, end, false, err));
    cp->pages_scanned++;
    return set_pages(cp, page, page, true, err);
}

/* A released page holds no patches: the INT3 bytes of its sites get their
 * original bytes back, and a jump over any of its bytes is undone (the
 * pages it spans are released too). The scan before it next runs starts
 * afresh, so a byte 0xCC there is the guest's own. */
static pk_status release_page(pk_codepages *cp, uint64_t page, pk_error *err);

static pk_status undo_jumps(pk_codepages *cp, uint64_t start, uint64_t end, pk_error *err)
{
    for (size_t i = 0; i < cp->njumps;) {
        pk_jump j = cp->jumps[i];
        if (j.site >= end || j.site + j.len <= start) {
            i++;
            continue;
        }
        memcpy(cp->tracee->ram + j.site, j.bytes, j.len);
        memmove(cp->jumps + i, cp->jumps + i + 1, (cp->njumps - i - 1) * sizeof *cp->jumps);
        memmove(cp->counterparts + i, cp->counterparts + i + 1,
                (cp->njumps - i - 1) * sizeof *cp->counterparts);
        cp->njumps--;
        for (uint64_t pg = j.site / PK_GUEST_PAGE; pg <= (j.site + j.len - 1) / PK_GUEST_PAGE; pg++)
            PK_CHECK(release_page(cp, pg, err));
    }
    return PK_OK;
}

static pk_status release_page(pk_codepages *cp, uint64_t page, pk_error *err)
{
    if (page >= cp->npages || !cp->is_code[page])
        return PK_OK;
    uint64_t start = page * PK_GUEST_PAGE, end = start + PK_GUEST_PAGE;
    PK_CHECK(set_pages(cp, page, page, false, err));
    cp->pages_released++;
    for (size_t i = lower_bound(cp, start); i < cp->npatches && int3_address(&cp->patches[i]) < end;) {
        const pk_patch *p = &cp->patches[i];
        if (p->tactic != PK_TACTIC_INT3) {
            i++; /* an INT3 in a trampoline: the jump is undone below */
            continue;
        }
        cp->tracee->ram[p->site] = p->bytes[0];
        drop_patch(cp, i);
    }
    return undo_jumps(cp, start, end, err);
}

pk_status pk_codepages_written(pk_codepages *cp, uint64_t addr, uint64_t len, pk_error *err)
{
    if (!cp->patching || len == 0)
        return PK_OK;
    uint64_t last = (addr + len - 1) / PK_GUEST_PAGE;
    for (uint64_t page = addr / PK_GUEST_PAGE; page <= last; page++)
        PK_CHECK(release_page(cp, page, err));
    return PK_OK;
}

pk_status pk_codepages_open(pk_codepages *cp, uint64_t addr, pk_error *err)
{
    uint64_t start = addr / PK_GUEST_PAGE * PK_GUEST_PAGE;
    return pk_tracee_protect(cp->tracee, start, PK_GUEST_PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, err);
}
