/* popek — `popek run`: the code of a traced program, scanned and patched
 * live.
 *
 * A process keeps the ranges of executable memory the monitor has taken
 * in hand ("covered"), the sites it patched there (a patch table like the
 * one `popek patch` writes, and the sites' INT3s in trampolines), and the
 * pages of code the program writes.
 *
 * A mapping of a file is scanned as the file (its symbols give recursive
 * descent its roots) as soon as it is mapped. Its sites take jumps where
 * `popek patch` would put them, to trampolines mapped beside the file,
 * and INT3 elsewhere. The scan and the plan are kept per file, for the run
 * and on disk, so libraries a forked or exec'ed program maps again, or
 * the next run maps, are not scanned again. The vDSO is scanned as the
 * ELF image it is.
 *
 * Code the program writes (anonymous or writable executable memory: a
 * JIT's) has no symbols, and often shares its pages with data. It is
 * scanned when it first runs, as `popek boot` does with guest RAM: such a
 * page is held without execute permission while it is data; running it
 * faults, and the page is swept from the faulting instruction (recursive
 * descent) and linearly, patched, and held without write permission while
 * it is code. A write to it then puts its original bytes back and makes
 * it data again, so a run of writes costs one fault, however long. A
 * linear-sweep site over bytes the program has stored to as data is left
 * alone: a counter beside the code must not be taken for an instruction
 * (and have an INT3 written into it). An instruction that writes its own
 * page runs once with the page open, single-stepped.
 *
 * A change the program makes (mprotect, munmap, mmap over, mremap) keeps
 * other threads' syncs off the range it names while it runs; then the
 * range is uncovered: its sites are forgotten, their original bytes put
 * back where the memory is still the same, and whatever is executable
 * there is taken in hand again. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "popek/flow.h"
#include "popek/image.h"
#include "popek/trampoline.h"
#include "popek/popek.h"
#include "popek/scan.h"
#include "internal/run.h"
#include "internal/tracee.h"

#define PAGE 4096ull

static uint64_t page_of(uint64_t a) { return a & ~(PAGE - 1); }

/* ---- memory ---------------------------------------------------------------------- */

static bool open_mem(run_process *p)
{
    if (p->mem >= 0)
        return true;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)p->pid);
    p->mem = open(path, O_RDWR | O_CLOEXEC);
    return p->mem >= 0;
}

bool run_peek(run_process *p, uint64_t addr, void *buf, size_t len)
{
    return open_mem(p) && pread(p->mem, buf, len, (off_t)addr) == (ssize_t)len;
}

bool run_poke(run_process *p, uint64_t addr, const void *buf, size_t len)
{
    return open_mem(p) && pwrite(p->mem, buf, len, (off_t)addr) == (ssize_t)len;
}

/* ---- arrays ---------------------------------------------------------------------- */

bool run_grow(void **array, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *g = realloc(*array, c * size);
    if (!g)
        return false;
    *array = g;
    *cap = c;
    return true;
}

bool run_append(void **array, size_t *count, size_t *cap, const void *item, size_t size)
{
    if (!run_grow(array, cap, *count, size))
        return false;
    memcpy((char *)*array + *count * size, item, size);
    (*count)++;
    return true;
}

/* ---- processes -------------------------------------------------------------------- */

run_process *run_process_new(pid_t pid)
{
    run_process *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->pid = pid;
    p->mem = -1;
    p->bits = 64;
    if (!(p->sighand = run_sighand_new(NULL))) {
        free(p);
        return NULL;
    }
    return p;
}

void run_process_reset(run_process *p)
{
    if (p->mem >= 0)
        close(p->mem);
    p->mem = -1;
    free(p->table.patches);
    free(p->table.jumps);
    free(p->via.patches);
    free(p->placed);
    free(p->covered);
    for (size_t i = 0; i < p->npages; i++)
        free(p->pages[i].written);
    free(p->pages);
    free(p->slots);
    pid_t pid = p->pid;
    unsigned threads = p->threads;
    run_sighand *sighand = p->sighand;
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->threads = threads;
    p->sighand = sighand;
    p->mem = -1;
    p->bits = 64;
}

void run_process_free(run_process *p)
{
    if (!p)
        return;
    run_process_reset(p);
    run_sighand_drop(p->sighand);
    free(p);
}

static void *copy_array(const void *a, size_t n, size_t size)
{
    if (!n)
        return NULL;
    void *c = malloc(n * size);
    if (c)
        memcpy(c, a, n * size);
    return c;
}

run_process *run_process_fork(const run_process *p, pid_t child, bool share_handlers)
{
    run_process *c = run_process_new(child);
    if (!c)
        return NULL;
    run_sighand_drop(c->sighand);
    c->sighand = share_handlers ? run_sighand_share(p->sighand) : run_sighand_new(p->sighand);
    c->bits = p->bits;
    c->table = p->table;
    c->table.patches = copy_array(p->table.patches, p->table.count, sizeof *p->table.patches);
    c->table_cap = p->table.count;
    c->covered = copy_array(p->covered, p->ncovered, sizeof *p->covered);
    c->ncovered = c->covered_cap = p->ncovered;
    c->pages = copy_array(p->pages, p->npages, sizeof *p->pages);
    c->npages = c->pages_cap = c->pages ? p->npages : 0;
    for (size_t i = 0; i < c->npages; i++)
        c->pages[i].written = copy_array(p->pages[i].written, p->pages[i].written ? PAGE / 8 : 0, 1);
    c->slots = copy_array(p->slots, p->nslots, sizeof *p->slots);
    c->nslots = c->slots_cap = p->nslots;
    c->table.jumps = copy_array(p->table.jumps, p->table.njumps, sizeof *p->table.jumps);
    c->jumps_cap = p->table.njumps;
    c->via = p->via;
    c->via.patches = copy_array(p->via.patches, p->via.count, sizeof *p->via.patches);
    c->via_cap = p->via.count;
    c->placed = copy_array(p->placed, p->nplaced, sizeof *p->placed);
    c->nplaced = c->placed_cap = p->nplaced;
    c->stub = p->stub;
    c->slot_page = p->slot_page;
    c->slot_used = p->slot_used;
    c->has_ldt = p->has_ldt;
    if ((p->table.count && !c->table.patches) || (p->ncovered && !c->covered) ||
        (p->table.njumps && !c->table.jumps) || (p->via.count && !c->via.patches) ||
        (p->nplaced && !c->placed) ||
        (p->npages && !c->npages) || (p->nslots && !c->slots) || !c->sighand) {
        run_process_free(c);
        return NULL;
    }
    return c;
}

/* ---- the maps ---------------------------------------------------------------------- */

static void free_maps(run_mapping *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].path);
    free(m);
}

/* Every mapping of /proc/PID/maps, or NULL with *n = 0 when it cannot be read. */
static run_mapping *read_maps(pid_t pid, size_t *n)
{
    char path[64], line[4352];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    *n = 0;
    if (!f)
        return NULL;
    run_mapping *m = NULL;
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long start, end, offset, inode;
        unsigned major, minor;
        char perms[8];
        int used = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &offset,
                   &major, &minor, &inode, &used) < 7)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            run_mapping *g = realloc(m, cap * sizeof *m);
            if (!g)
                break;
            m = g;
        }
        char *name = line + used;
        name[strcspn(name, "\n")] = 0;
        run_mapping *r = &m[(*n)++];
        r->start = start;
        r->end = end;
        r->offset = offset;
        r->dev = makedev(major, minor);
        r->inode = inode;
        r->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                  (perms[2] == 'x' ? PROT_EXEC : 0);
        r->shared = perms[3] == 's';
        r->path = *name ? strdup(name) : NULL;
    }
    fclose(f);
    return m;
}

/* ---- covered ranges ------------------------------------------------------------- */

static bool cover(run_process *p, uint64_t lo, uint64_t hi)
{
    if (!run_grow((void **)&p->covered, &p->covered_cap, p->ncovered, sizeof *p->covered))
        return false;
    size_t i = 0;
    while (i < p->ncovered && p->covered[i].end < lo)
        i++;
    size_t j = i;
    while (j < p->ncovered && p->covered[j].start <= hi) {
        lo = p->covered[j].start < lo ? p->covered[j].start : lo;
        hi = p->covered[j].end > hi ? p->covered[j].end : hi;
        j++;
    }
    /* [i, j) merge into one */
    if (j == i) {
        memmove(&p->covered[i + 1], &p->covered[i], (p->ncovered - i) * sizeof *p->covered);
        p->ncovered++;
    } else {
        memmove(&p->covered[i + 1], &p->covered[j], (p->ncovered - j) * sizeof *p->covered);
        p->ncovered -= j - i - 1;
    }
    p->covered[i] = (run_range){ lo, hi };
    return true;
}

static bool uncover_range(run_process *p, uint64_t lo, uint64_t hi)
{
    run_range *out = malloc((p->ncovered * 2 + 1) * sizeof *out);
    if (!out)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < p->ncovered; i++) {
        run_range r = p->covered[i];
        if (r.end <= lo || r.start >= hi) {
            out[n++] = r;
            continue;
        }
        if (r.start < lo)
            out[n++] = (run_range){ r.start, lo };
        if (r.end > hi)
            out[n++] = (run_range){ hi, r.end };
    }
    free(p->covered);
    p->covered = out;
    p->ncovered = n;
    p->covered_cap = p->ncovered * 2 + 1;
    return true;
}

/* The end of the covered range holding a, or 0. */
static uint64_t covered_until(const run_process *p, uint64_t a)
{
    for (size_t i = 0; i < p->ncovered; i++)
        if (p->covered[i].start <= a && a < p->covered[i].end)
            return p->covered[i].end;
    return 0;
}

/* The end of a range some thread's call is changing that holds a, or 0. */
static uint64_t busy_until(const run_process *p, uint64_t a)
{
    for (size_t i = 0; i < p->nbusy; i++)
        if (p->busy[i].start <= a && a < p->busy[i].end)
            return p->busy[i].end;
    return 0;
}

bool run_own(run_process *p, uint64_t lo, uint64_t hi)
{
    return cover(p, lo, hi);
}

bool run_was_site(const run_process *p, uint64_t addr)
{
    size_t n = p->nghosts < RUN_GHOSTS ? p->nghosts : RUN_GHOSTS;
    for (size_t i = 0; i < n; i++)
        if (p->ghosts[i] == addr)
            return true;
    return false;
}

bool run_code_touches(const run_process *p, uint64_t addr, uint64_t len)
{
    uint64_t hi = addr + len < addr ? UINT64_MAX : addr + len;
    for (size_t i = 0; i < p->ncovered; i++)
        if (p->covered[i].start < hi && addr < p->covered[i].end)
            return true;
    return false;
}

/* The page record of addr, or NULL. */
static run_page *page_at(const run_process *p, uint64_t addr)
{
    uint64_t a = page_of(addr);
    size_t lo = 0, hi = p->npages;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->pages[mid].addr < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->npages && p->pages[lo].addr == a ? &p->pages[lo] : NULL;
}

/* ---- sites -------------------------------------------------------------------------- */

const pk_patch *run_site_at(const run_process *p, uint64_t addr)
{
    return pk_patch_table_find(&p->table, addr);
}

const pk_patch *run_via_at(const run_process *p, uint64_t addr)
{
    return pk_patch_table_find(&p->via, addr);
}

/* The vcpu page of the blocks in jump j's trampoline, or 0. */
static uint64_t jump_page(const run_process *p, const pk_jump *j)
{
    for (size_t i = 0; i < p->nplaced; i++)
        if (j->trampoline >= p->placed[i].at &&
            j->trampoline < p->placed[i].at + p->placed[i].size)
            return p->placed[i].page;
    return 0;
}

/* The sites of p's table inside jump j: the index of the first, and how
 * many there are. */
static size_t jump_sites(const run_process *p, const pk_jump *j, size_t *first)
{
    const pk_patch_table *t = &p->table;
    size_t lo = 0, hi = t->count;
    while (lo < hi) { /* the first site at or after the jump */
        size_t mid = lo + (hi - lo) / 2;
        if (t->patches[mid].site < j->site)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    while (lo + n < t->count && t->patches[lo + n].site < j->site + j->len)
        n++;
    *first = lo;
    return n;
}

/* The counterparts of jump j's instructions in its trampoline, from p's
 * memory (pk_trampoline_check's counterparts). */
static bool jump_counterparts(run_process *p, const pk_jump *j, uint64_t out[PK_JUMP_MAX_LEN])
{
    if (p->counterparts_of && p->counterparts_of == j->trampoline) {
        memcpy(out, p->counterparts, sizeof p->counterparts);
        return true;
    }
    size_t first, n = jump_sites(p, j, &first);
    uint64_t page = jump_page(p, j);
    uint8_t *code = malloc(j->trampoline_len);
    pk_error err;
    bool ok = code && run_peek(p, j->trampoline, code, j->trampoline_len) &&
              pk_trampoline_check(j, &p->table.patches[first], n, p->bits,
                                  page ? PK_TABLE_USER : 0, page, code, j->trampoline_len, out,
                                  &err) == PK_OK;
    free(code);
    if (ok) {
        p->counterparts_of = j->trampoline;
        memcpy(p->counterparts, out, sizeof p->counterparts);
    }
    return ok;
}

/* The jump of p whose trampoline holds addr, or NULL. */
static const pk_jump *trampoline_at(const run_process *p, uint64_t addr)
{
    for (size_t i = 0; i < p->table.njumps; i++) {
        const pk_jump *j = &p->table.jumps[i];
        if (addr >= j->trampoline && addr < j->trampoline + j->trampoline_len)
            return j;
    }
    return NULL;
}

static bool peek_mem(void *ctx, uint64_t addr, void *buf, size_t size)
{
    return run_peek(ctx, addr, buf, size);
}

bool run_in_block(run_process *p, uint64_t addr)
{
    const pk_jump *j = trampoline_at(p, addr);
    uint64_t at[PK_JUMP_MAX_LEN];
    if (!j || !jump_page(p, j) || run_via_at(p, addr) ||
        addr == j->trampoline + j->trampoline_len - 5 /* the jmp rel32 back */ ||
        !jump_counterparts(p, j, at))
        return false;
    for (unsigned off = 0; off < j->len; off++)
        if (at[off] == addr)
            return false;
    return true;
}

bool run_undo_block(run_process *p, struct user_regs_struct *r)
{
    const pk_jump *j = trampoline_at(p, r->rip);
    uint64_t page = j ? jump_page(p, j) : 0, at[PK_JUMP_MAX_LEN];
    if (!page || !jump_counterparts(p, j, at))
        return false;
    size_t first, n = jump_sites(p, j, &first);
    for (size_t k = first; k < first + n; k++) {
        const pk_patch *q = &p->table.patches[k];
        uint64_t block = at[q->site - j->site];
        if (block < r->rip && r->rip < q->trampoline) {
            pk_regs regs;
            pk_regs_from_user(r, &regs);
            pk_guest_mem mem = { p, peek_mem, NULL };
            if (!pk_fastpath_undo(q, p->bits, true, block, page, &regs, &mem))
                return false;
            pk_regs_to_user(&regs, r);
            return true;
        }
    }
    return false;
}

uint64_t run_original_of(run_engine *e, run_process *p, uint64_t addr)
{
    const pk_jump *j = trampoline_at(p, addr);
    uint64_t at[PK_JUMP_MAX_LEN];
    if (!j)
        return 0;
    /* A site's INT3 (after its block, with the fast path) stands for it. */
    const pk_patch *via = run_via_at(p, addr);
    if (via)
        return via->trampoline;
    if (jump_counterparts(p, j, at))
        for (unsigned off = 0; off < j->len; off++)
            if (at[off] == addr)
                return j->site + off;
    /* The jump back: as good as the instruction after the jump. */
    run_insn ri;
    uint64_t back;
    if (run_decode(e, p, addr, &ri) && ri.insn.mnemonic == ZYDIS_MNEMONIC_JMP &&
        ri.ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
        ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&ri.insn, &ri.ops[0], addr, &back)) &&
        back == j->site + j->len)
        return back;
    return 0;
}

uint64_t run_resume_at(run_process *p, uint64_t addr)
{
    const pk_jump *j = pk_patch_table_jump_at(&p->table, addr);
    uint64_t at[PK_JUMP_MAX_LEN];
    if (!j || addr == j->site || !jump_counterparts(p, j, at) || !at[addr - j->site])
        return addr;
    return at[addr - j->site];
}

static int by_site(const void *a, const void *b)
{
    const pk_patch *x = a, *y = b;
    return x->site < y->site ? -1 : x->site > y->site;
}

static int by_jump(const void *a, const void *b);

/* Puts p's tables back in the order their lookups need. */
static void sort_tables(run_process *p)
{
    if (p->table.count)
        qsort(p->table.patches, p->table.count, sizeof *p->table.patches, by_site);
    if (p->table.njumps)
        qsort(p->table.jumps, p->table.njumps, sizeof *p->table.jumps, by_jump);
    if (p->via.count)
        qsort(p->via.patches, p->via.count, sizeof *p->via.patches, by_site);
}

/* Whether a site the scanner found is patched in a running program:
 * never its doors to the kernel (SYSCALL, SYSENTER, INT 0x80: seccomp
 * shows the monitor what passes), nor the opt-in rows unless named. */
static bool patchable(const run_engine *e, pk_class_id cls, uint8_t flags)
{
    if (flags & PK_SITE_INSIDE_REACHED)
        return false;
    if (cls == PK_CLASS_SYSCALL || cls == PK_CLASS_SYSENTER || cls == PK_CLASS_INT80)
        return false;
    const pk_class *c = pk_class_get(cls);
    return !(c->flags & PK_CLASS_OPT_IN) || (e->opts->only && e->opts->only[cls]);
}

/* Patches the instruction bytes[0..len) found at addr with INT3, if the
 * process still holds it there (else *differs is set) and no site covers
 * it yet. */
static pk_status patch_site(run_engine *e, run_process *p, uint64_t addr, const uint8_t *bytes,
                            uint8_t len, pk_class_id cls, bool *differs, pk_error *err)
{
    for (size_t i = 0; i < p->table.count; i++) {
        const pk_patch *q = &p->table.patches[i];
        if (q->site < addr + len && addr < q->site + q->len)
            return PK_OK;
    }
    uint8_t now[15];
    if (!run_peek(p, addr, now, len) || memcmp(now, bytes, len) != 0) {
        *differs = true;
        return PK_OK;
    }
    if (!run_grow((void **)&p->table.patches, &p->table_cap, p->table.count,
                  sizeof *p->table.patches))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    static const uint8_t int3 = 0xcc;
    if (!run_poke(p, addr, &int3, 1))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot patch 0x%llx in process %d",
                       (unsigned long long)addr, (int)p->pid);
    pk_patch *q = &p->table.patches[p->table.count++];
    memset(q, 0, sizeof *q);
    q->site = addr;
    q->len = len;
    memcpy(q->bytes, bytes, len);
    q->cls = cls;
    q->tactic = PK_TACTIC_INT3;
    e->stats->sites_patched++;
    if (e->opts->trace)
        run_log(e, "[%d] patched 0x%llx %s", (int)p->pid, (unsigned long long)addr,
                pk_class_get(cls)->key);
    return PK_OK;
}

/* Writes len bytes over live code so that no thread runs a mix of old
 * and new: INT3 first, then the rest, then the first byte (the protocol
 * of Linux's text_poke_bp). A thread meeting the INT3 meanwhile stops in
 * the monitor, which finds the site. */
static void poke_code(run_process *p, uint64_t addr, const uint8_t *bytes, size_t len)
{
    static const uint8_t int3 = 0xcc;
    if (len > 1) {
        run_poke(p, addr, &int3, 1);
        run_poke(p, addr + 1, bytes + 1, len - 1);
    }
    run_poke(p, addr, bytes, 1);
}

/* Forgets the sites and jumps in [lo, hi); with restore, their original
 * bytes go back where the monitor's still are. */
static void unpatch(run_process *p, uint64_t lo, uint64_t hi, bool restore)
{
    size_t n = 0;
    for (size_t i = 0; i < p->table.njumps; i++) {
        pk_jump *j = &p->table.jumps[i];
        if (j->site < lo || j->site >= hi) {
            p->table.jumps[n++] = *j;
            continue;
        }
        uint8_t byte;
        /* Its trampoline stays, and its sites there (p->via): a thread
         * still in it finishes it and comes back to the original bytes. */
        if (restore && run_peek(p, j->site, &byte, 1) && byte == 0xe9)
            poke_code(p, j->site, j->bytes, j->len);
        p->ghosts[p->nghosts++ % RUN_GHOSTS] = j->site;
    }
    p->table.njumps = n;
    p->counterparts_of = 0;
    /* Out-of-line copies of sites that may change are made afresh: their
     * room is free for other copies. */
    for (size_t i = 0; i < p->nslots; i++)
        if (p->slots[i].site >= lo && p->slots[i].site < hi)
            p->slots[i].site = 0;
    n = 0;
    for (size_t i = 0; i < p->table.count; i++) {
        pk_patch *q = &p->table.patches[i];
        if (q->site < lo || q->site >= hi) {
            p->table.patches[n++] = *q;
            continue;
        }
        uint8_t byte;
        if (q->tactic != PK_TACTIC_INT3)
            continue;
        if (restore && run_peek(p, q->site, &byte, 1) && byte == 0xcc)
            run_poke(p, q->site, q->bytes, 1);
        /* A thread may have hit it already: its trap is still to come. */
        p->ghosts[p->nghosts++ % RUN_GHOSTS] = q->site;
    }
    p->table.count = n;
}

/* ---- scanning ----------------------------------------------------------------------- */

typedef struct cached_site {
    uint64_t offset;        /* in the file */
    uint64_t vaddr;         /* and in its ELF address space */
    uint8_t len, flags, found;
    uint16_t cls;
    uint8_t bytes[15];
} cached_site;

/* One file's scan, kept for the run, and its jump plan once made. */
struct run_scan_cache {
    run_scan_cache *next;
    uint64_t dev, inode, size;
    struct timespec mtime;
    char *name;             /* its file in the cache directory, or NULL */
    cached_site *sites;
    size_t n;
    /* The plan (file addresses) for trampolines at code_vaddr; 0: none. */
    uint64_t code_vaddr;
    pk_patch_table plan;
    uint8_t *code;
    size_t code_len;
};

static void free_plan(run_scan_cache *c)
{
    pk_patch_table_free(&c->plan);
    free(c->code);
    c->code = NULL;
    c->code_len = 0;
    c->code_vaddr = 0;
}

void run_cache_free(run_scan_cache *c)
{
    while (c) {
        run_scan_cache *next = c->next;
        free_plan(c);
        free(c->name);
        free(c->sites);
        free(c);
        c = next;
    }
}

static pk_scan_options scan_options(const run_engine *e, const pk_image *img, unsigned sweeps)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < img->nregions; i++)
        bytes += img->regions[i].size;
    /* Threads pay off on a library, not on a page. */
    return (pk_scan_options){ .sets = e->sets, .only = e->opts->only, .sweeps = sweeps,
                              .threads = bytes < (1u << 20) ? 1 : 0 };
}

/* The sites of img as file offsets, in a new cache entry. */
static run_scan_cache *scan_image(run_engine *e, const pk_image *img, unsigned sweeps)
{
    pk_scan scan;
    pk_error err;
    pk_scan_options so = scan_options(e, img, sweeps);
    if (pk_scan_image(img, &so, &scan, &err) != PK_OK)
        return NULL;
    run_scan_cache *c = calloc(1, sizeof *c);
    if (c && scan.nsites && !(c->sites = calloc(scan.nsites, sizeof *c->sites))) {
        free(c);
        c = NULL;
    }
    for (size_t i = 0; c && i < scan.nsites; i++) {
        const pk_site *s = &scan.sites[i];
        const pk_region *r = &img->regions[s->region];
        cached_site *cs = &c->sites[c->n++];
        cs->offset = r->offset + (s->vaddr - r->vaddr);
        cs->vaddr = s->vaddr;
        cs->len = s->len;
        cs->flags = s->flags;
        cs->found = s->found;
        cs->cls = s->cls;
        memcpy(cs->bytes, s->bytes, s->len);
    }
    pk_scan_free(&scan);
    return c;
}

/* ---- the scan cache on disk ---------------------------------------------------------- */

/* A cache file: this header, n and n cached_site records; then the plan:
 * code_vaddr (0: none), the encoded table's length and bytes
 * (docs/patch-table.md), the trampolines' length and bytes. */
#define CACHE_MAGIC "popekscan2\n"

/* A file's name in the cache directory: its build id (else where it is
 * and when it last changed), its size, and a hash of what decides the
 * scan (popek's version, the sets and rows patched). */
static void cache_name(const run_engine *e, const char *path, const struct stat *st,
                       char *name, size_t size)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    char config[64];
    snprintf(config, sizeof config, "%s/%u/%zu/%d", POPEK_VERSION, e->sets,
             sizeof(cached_site), (int)PK_CLASS_COUNT);
    for (const char *c = config; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (int i = 0; i < PK_CLASS_COUNT; i++)
        h = (h ^ (uint8_t)(e->opts->only && e->opts->only[i])) * 1099511628211ull;
    uint8_t id[64];
    size_t n = pk_elf_build_id(path, id, sizeof id);
    char who[2 * sizeof id + 1];
    if (n) {
        for (size_t i = 0; i < n; i++)
            snprintf(who + 2 * i, 3, "%02x", id[i]);
    } else {
        snprintf(who, sizeof who, "file-%llx-%llx-%lld.%09ld", (unsigned long long)st->st_dev,
                 (unsigned long long)st->st_ino, (long long)st->st_mtim.tv_sec,
                 st->st_mtim.tv_nsec);
    }
    snprintf(name, size, "%s/%s-%llx-%016llx.scan", e->opts->cache_dir, who,
             (unsigned long long)st->st_size, (unsigned long long)h);
}

static bool read_blob(FILE *f, uint8_t **out, uint64_t *len)
{
    *out = NULL;
    if (fread(len, sizeof *len, 1, f) != 1 || *len > (64u << 20))
        return false;
    if (!*len)
        return true;
    return (*out = malloc(*len)) && fread(*out, *len, 1, f) == 1;
}

static run_scan_cache *cache_load(const char *name)
{
    FILE *f = fopen(name, "rb");
    if (!f)
        return NULL;
    char magic[sizeof CACHE_MAGIC - 1];
    uint64_t n, table_len = 0, code_len = 0;
    uint8_t *table = NULL, *code = NULL;
    run_scan_cache *c = calloc(1, sizeof *c);
    bool ok = c && fread(magic, sizeof magic, 1, f) == 1 &&
              !memcmp(magic, CACHE_MAGIC, sizeof magic) && fread(&n, sizeof n, 1, f) == 1 &&
              n < (1u << 24) && (!n || (c->sites = calloc(n, sizeof *c->sites))) &&
              (!n || fread(c->sites, sizeof *c->sites, n, f) == n) &&
              fread(&c->code_vaddr, sizeof c->code_vaddr, 1, f) == 1 &&
              read_blob(f, &table, &table_len) && read_blob(f, &code, &code_len) &&
              fgetc(f) == EOF;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = c->sites[i].cls < PK_CLASS_COUNT && c->sites[i].len >= 1 && c->sites[i].len <= 15;
    pk_error err;
    if (ok && c->code_vaddr)
        ok = pk_patch_table_decode(table, table_len, &c->plan, &err) == PK_OK;
    fclose(f);
    free(table);
    if (!ok) {
        free(code);
        run_cache_free(c);
        return NULL;
    }
    c->n = n;
    c->code = code;
    c->code_len = code_len;
    return c;
}

/* Written to a temporary name and renamed, so a reader never sees half. */
static void cache_store(const run_scan_cache *c)
{
    if (!c->name)
        return;
    uint8_t *table = NULL;
    size_t table_len = 0;
    pk_error err;
    if (c->code_vaddr && pk_patch_table_encode(&c->plan, &table, &table_len, &err) != PK_OK)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d", c->name, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(table);
        return;
    }
    uint64_t n = c->n, tl = table_len, cl = c->code_vaddr ? c->code_len : 0;
    bool ok = fwrite(CACHE_MAGIC, sizeof CACHE_MAGIC - 1, 1, f) == 1 &&
              fwrite(&n, sizeof n, 1, f) == 1 &&
              (!c->n || fwrite(c->sites, sizeof *c->sites, c->n, f) == c->n) &&
              fwrite(&c->code_vaddr, sizeof c->code_vaddr, 1, f) == 1 &&
              fwrite(&tl, sizeof tl, 1, f) == 1 && (!tl || fwrite(table, tl, 1, f) == 1) &&
              fwrite(&cl, sizeof cl, 1, f) == 1 && (!cl || fwrite(c->code, cl, 1, f) == 1);
    free(table);
    if (fclose(f) != 0 || !ok || rename(tmp, c->name) != 0)
        unlink(tmp);
}

/* The scan of the file mapping m shows, from the cache or made now; NULL
 * when the file is not the one mapped or is no ELF file. */
static run_scan_cache *file_scan(run_engine *e, const run_mapping *m)
{
    struct stat st;
    if (!m->path || m->path[0] != '/' || stat(m->path, &st) != 0 ||
        (uint64_t)st.st_ino != m->inode || (uint64_t)st.st_dev != m->dev)
        return NULL;
    for (run_scan_cache *c = e->cache; c; c = c->next)
        if (c->dev == m->dev && c->inode == m->inode && c->size == (uint64_t)st.st_size &&
            c->mtime.tv_sec == st.st_mtim.tv_sec && c->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            e->stats->scan_cache_hits++;
            return c;
        }
    char name[4096];
    run_scan_cache *c = NULL;
    if (e->opts->cache_dir) {
        cache_name(e, m->path, &st, name, sizeof name);
        if ((c = cache_load(name)) != NULL)
            e->stats->scan_cache_hits++;
    }
    if (!c) {
        pk_image img;
        pk_error err;
        if (pk_image_load_file(&img, m->path, &err) != PK_OK)
            return NULL;
        c = img.kind == PK_IMAGE_ELF ? scan_image(e, &img, 0) : NULL;
        pk_image_free(&img);
        if (!c)
            return NULL;
        if (e->opts->cache_dir) {
            c->name = strdup(name);
            cache_store(c);
        }
    } else {
        c->name = strdup(name);
    }
    c->dev = m->dev;
    c->inode = m->inode;
    c->size = (uint64_t)st.st_size;
    c->mtime = st.st_mtim;
    c->next = e->cache;
    e->cache = c;
    return c;
}

/* Whether the program stored to any byte of [addr, addr + len) in its
 * page pg (NULL: none known). */
static bool stored_to(const run_process *p, uint64_t addr, unsigned len)
{
    for (uint64_t b = addr; b < addr + len; b++) {
        const run_page *pg = page_at(p, b);
        uint64_t k = b - page_of(b);
        if (pg && pg->written && (pg->written[k / 8] >> (k % 8) & 1))
            return true;
    }
    return false;
}

/* Patches the sites of c (file offsets) that start in [lo, hi) of m; a
 * site the linear sweep alone found over bytes stored to as data is not
 * an instruction. *differs: the process holds other bytes at some site. */
static pk_status patch_from(run_engine *e, run_process *p, const run_scan_cache *c,
                            const run_mapping *m, uint64_t lo, uint64_t hi, bool *differs,
                            pk_error *err)
{
    for (size_t i = 0; i < c->n; i++) {
        const cached_site *s = &c->sites[i];
        if (s->offset < m->offset)
            continue;
        uint64_t addr = m->start + (s->offset - m->offset);
        if (addr < lo || addr >= hi || !patchable(e, s->cls, s->flags))
            continue;
        if (!(s->found & PK_FOUND_RECURSIVE) && stored_to(p, addr, s->len))
            continue;
        PK_CHECK(patch_site(e, p, addr, s->bytes, s->len, s->cls, differs, err));
    }
    return PK_OK;
}

/* Reads [lo, hi) as the program wrote it: patched sites show their
 * original bytes. */
static uint8_t *read_code(run_process *p, uint64_t lo, uint64_t hi)
{
    uint8_t *buf = malloc(hi - lo);
    if (!buf || !run_peek(p, lo, buf, hi - lo)) {
        free(buf);
        return NULL;
    }
    for (size_t i = 0; i < p->table.count; i++) {
        const pk_patch *q = &p->table.patches[i];
        if (q->tactic == PK_TACTIC_INT3 && q->site >= lo && q->site < hi)
            buf[q->site - lo] = q->bytes[0];
    }
    return buf;
}

/* Scans [lo, hi) of mapping m and patches what it finds there; only sites
 * starting in [keep_lo, keep_hi) are kept (a page swept with some context).
 * Raw code is swept linearly, and from entry (when not 0) by recursive
 * descent. */
static pk_status scan_range(run_engine *e, run_process *p, const run_mapping *m,
                            const run_scan_cache *c, uint64_t lo, uint64_t hi, uint64_t keep_lo,
                            uint64_t keep_hi, uint64_t entry, pk_error *err)
{
    e->stats->mappings_scanned++;
    bool vdso = m->path && strcmp(m->path, "[vdso]") == 0;
    bool differs = false;
    if (c && !(m->prot & PROT_WRITE)) {
        PK_CHECK(patch_from(e, p, c, m, keep_lo, keep_hi, &differs, err));
        /* The file's code, changed once loaded (a text relocation): swept
         * as it stands too. */
        if (!differs)
            return PK_OK;
    }

    uint64_t from = vdso ? m->start : lo, to = vdso ? m->end : hi;
    uint8_t *buf = read_code(p, from, to);
    if (!buf)
        return PK_OK; /* gone meanwhile */
    pk_image img;
    pk_error lerr;
    pk_status s = vdso ? pk_image_load_elf_memory(&img, buf, to - from, "[vdso]", &lerr)
                       : pk_image_load_raw_memory(&img, buf, to - from, "[code]", p->bits, from,
                                                  &lerr);
    free(buf);
    if (s != PK_OK)
        return PK_OK;
    if (entry) {
        img.entry = entry;
        img.has_entry = true;
    }
    run_scan_cache *own = scan_image(e, &img, vdso || entry ? 0 : PK_FOUND_LINEAR);
    pk_image_free(&img);
    if (!own)
        return pk_fail(err, PK_ERR_NOMEM, "cannot scan 0x%llx-0x%llx",
                       (unsigned long long)from, (unsigned long long)to);
    /* Raw code's "file" is the range itself. */
    run_mapping at = { .start = vdso ? m->start : from, .offset = 0 };
    s = patch_from(e, p, own, &at, keep_lo, keep_hi, &differs, err);
    run_cache_free(own);
    return s;
}

/* ---- jumps ------------------------------------------------------------------------- */

/* Plans jumps for the file of c (at path) with its trampolines laid out
 * from code_vaddr, as `popek patch` would, flow facts and all, and with
 * page (or 0) their fast-path blocks' vcpu page: c->plan. */
static bool plan_file(run_engine *e, run_scan_cache *c, const char *path, uint64_t code_vaddr,
                      uint64_t page)
{
    pk_image img;
    pk_error err;
    pk_scan scan = { 0 };
    pk_flow flow = { 0 };
    pk_plan plan = { 0 };
    free_plan(c);
    if (pk_image_load_file(&img, path, &err) != PK_OK)
        return false;
    pk_scan_options so = scan_options(e, &img, 0);
    so.flow = true;
    bool ok = img.kind == PK_IMAGE_ELF && !img.is_patched &&
              pk_scan_image(&img, &so, &scan, &err) == PK_OK;
    if (ok) {
        /* The doors to the kernel stay as they are. */
        size_t n = 0;
        for (size_t i = 0; i < scan.nsites; i++)
            if (patchable(e, scan.sites[i].cls, 0))
                scan.sites[n++] = scan.sites[i];
        scan.nsites = n;
    }
    pk_plan_options po = { .tactic = PK_CHOOSE_AUTO, .allow_skip = true, .only = e->opts->only,
                           .vcpu_page = page, .user = true };
    ok = ok && pk_flow_build(&img, &flow, &err) == PK_OK &&
         pk_patch_plan(&img, &scan, &flow, code_vaddr, &po, &plan, &err) == PK_OK;
    if (ok) {
        c->plan = plan.table;
        c->code = plan.code;
        c->code_len = plan.code_len;
        c->code_vaddr = code_vaddr;
        memset(&plan.table, 0, sizeof plan.table);
        plan.code = NULL;
    }
    pk_plan_free(&plan);
    pk_flow_free(&flow);
    pk_scan_free(&scan);
    pk_image_free(&img);
    return ok;
}

/* Whether [lo, hi) is free of mappings. */
static bool unmapped(const run_mapping *maps, size_t nmaps, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < nmaps; i++)
        if (maps[i].start < hi && lo < maps[i].end)
            return false;
    return true;
}

/* The room for c's trampolines: at most 64 bytes a site, 256 with blocks;
 * the vcpu page follows it. */
static uint64_t trampoline_room(const run_engine *e, const run_scan_cache *c)
{
    uint64_t per_site = e->opts->fast_path ? 256 : 64;
    return (per_site * (uint64_t)c->n + 64 + PAGE - 1) & ~(PAGE - 1);
}

/* Whether c's plan was made for trampolines at at (its file loaded at
 * bias) with the vcpu page at page (0: none); else makes it so. A plan is
 * made at the file's own addresses and moved by bias, but 32-bit blocks
 * address the page absolutely: theirs names it where it is. */
static bool plan_for(run_engine *e, run_scan_cache *c, const char *path, unsigned bits,
                     uint64_t at, uint64_t page, uint64_t bias)
{
    uint64_t want_page = !page ? 0 : bits == 32 ? page : page - bias;
    if (c->code_vaddr == at - bias && c->plan.vcpu_page == want_page)
        return true;
    if (!plan_file(e, c, path, at - bias, want_page))
        return false;
    cache_store(c);
    return true;
}

pk_status run_fast_pages(run_engine *e, run_thread *t, pk_error *err)
{
    run_process *p = t->proc;
    pk_vcpu_page page;
    run_fast_page(e, p, &page);
    for (size_t i = 0; i < p->nplaced; i++)
        if (p->placed[i].page && !run_poke(p, p->placed[i].page, &page, sizeof page))
            return pk_fail(err, PK_ERR_INTERNAL, "cannot write the vcpu page at 0x%llx in "
                           "process %d", (unsigned long long)p->placed[i].page, (int)p->pid);
    return PK_OK;
}

/* Where the trampolines of c's file go in t's process, mapped now if they
 * are not yet: just below the file's lowest mapping (ld.so maps libraries
 * top down, leaving room there), else, but for the program itself, just
 * above its highest. 0 when neither has room: the file's sites take INT3.
 * With the fast path their vcpu page follows them, writable. */
static uint64_t place_trampolines(run_engine *e, run_thread *t, run_scan_cache *c,
                                  const run_mapping *maps, size_t nmaps, const run_mapping *m,
                                  uint64_t bias, pk_error *err, pk_status *status)
{
    run_process *p = t->proc;
    for (size_t i = 0; i < p->nplaced; i++) {
        const run_placed *pl = &p->placed[i];
        if (pl->dev != m->dev || pl->inode != m->inode || pl->bias != bias)
            continue;
        /* The file's plan may have been made since for another place (in
         * another process): made again for this one, the same code. */
        if (!plan_for(e, c, m->path, p->bits, pl->at, pl->page, bias) ||
            c->code_len > pl->size)
            return 0;
        return pl->at;
    }
    uint64_t lowest = m->start, highest = m->end;
    for (size_t i = 0; i < nmaps; i++)
        if (maps[i].dev == m->dev && maps[i].inode == m->inode) {
            lowest = maps[i].start < lowest ? maps[i].start : lowest;
            highest = maps[i].end > highest ? maps[i].end : highest;
        }
    uint64_t size = trampoline_room(e, c), page_size = e->opts->fast_path ? PAGE : 0;
    uint64_t limit = p->bits == 32 ? 1ull << 32 : 1ull << 47;
    /* Above the program itself is where its heap (brk) starts. */
    char exe[64];
    struct stat st;
    snprintf(exe, sizeof exe, "/proc/%d/exe", (int)p->pid);
    bool program = stat(exe, &st) == 0 && (uint64_t)st.st_ino == m->inode &&
                   (uint64_t)st.st_dev == m->dev;
    uint64_t whole = size + page_size;
    uint64_t candidates[2] = { lowest > whole + (1u << 20) ? lowest - whole : 0,
                               !program && highest + whole < limit ? highest : 0 };
    for (int k = 0; k < 2; k++) {
        uint64_t at = candidates[k], page = page_size ? at + size : 0;
        if (!at || !unmapped(maps, nmaps, at, at + whole))
            continue;
        if (!plan_for(e, c, m->path, p->bits, at, page, bias))
            return 0;
        if (!c->plan.njumps || c->code_len > size)
            return 0;
        uint64_t mapped;
        if ((*status = run_map(e, t, at, whole, &mapped, err)) != PK_OK)
            return 0;
        if (!mapped)
            continue;
        if (page && (*status = run_protect(e, t, page, PAGE, PROT_READ | PROT_WRITE, err)) !=
                    PK_OK)
            return 0;
        run_placed placed = { m->dev, m->inode, bias, at, size, page };
        if (!run_poke(p, at, c->code, c->code_len) ||
            !run_append((void **)&p->placed, &p->nplaced, &p->placed_cap, &placed, sizeof placed)) {
            *status = pk_fail(err, PK_ERR_INTERNAL, "cannot write trampolines in process %d",
                              (int)p->pid);
            return 0;
        }
        if (page && (*status = run_fast_pages(e, t, err)) != PK_OK)
            return 0;
        return at;
    }
    if (e->opts->trace)
        run_log(e, "[%d] no room for the trampolines of %s: INT3 instead", (int)p->pid,
                m->path);
    return 0;
}

/* Writes the jumps of c's plan that start in [lo, hi) of file mapping m
 * (maps: all of the process's mappings), with their trampolines; records
 * their sites. Sites left over take INT3 afterwards (patch_from). */
static pk_status place_jumps(run_engine *e, run_thread *t, run_scan_cache *c,
                             const run_mapping *maps, size_t nmaps, const run_mapping *m,
                             uint64_t lo, uint64_t hi, pk_error *err)
{
    run_process *p = t->proc;
    /* The load bias, from any site in this mapping. */
    const cached_site *any = NULL;
    for (size_t i = 0; i < c->n && !any; i++)
        if (c->sites[i].offset >= m->offset && c->sites[i].offset < m->offset + (m->end - m->start))
            any = &c->sites[i];
    if (!any)
        return PK_OK;
    uint64_t bias = m->start + (any->offset - m->offset) - any->vaddr;
    pk_status s = PK_OK;
    if (!place_trampolines(e, t, c, maps, nmaps, m, bias, err, &s))
        return s;
    for (size_t i = 0; i < c->plan.njumps; i++) {
        pk_jump j = c->plan.jumps[i];
        uint8_t now[PK_JUMP_MAX_LEN], code[PK_JUMP_MAX_LEN];
        if (j.site + bias < lo || j.site + bias + j.len > hi ||
            !run_peek(p, j.site + bias, now, j.len) || memcmp(now, j.bytes, j.len) != 0 ||
            pk_jump_emit(&j, p->bits, code, err) != PK_OK)
            continue;
        j.site += bias;
        j.trampoline += bias;
        if (!run_append((void **)&p->table.jumps, &p->table.njumps, &p->jumps_cap, &j, sizeof j))
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < c->plan.count; k++) {
            pk_patch q = c->plan.patches[k];
            if (q.site + bias < j.site || q.site + bias >= j.site + j.len)
                continue;
            q.site += bias;
            q.trampoline += bias;
            pk_patch via = q;
            via.site = q.trampoline;
            via.trampoline = q.site;
            if (!run_append((void **)&p->table.patches, &p->table.count, &p->table_cap, &q,
                        sizeof q) ||
                !run_append((void **)&p->via.patches, &p->via.count, &p->via_cap, &via,
                        sizeof via))
                return pk_fail(err, PK_ERR_NOMEM, "out of memory");
            e->stats->sites_patched++;
            e->stats->sites_jumped++;
        }
        poke_code(p, j.site, code, j.len);
    }
    return PK_OK;
}

static int by_jump(const void *a, const void *b)
{
    const pk_jump *x = a, *y = b;
    return x->site < y->site ? -1 : x->site > y->site;
}

/* ---- code pages the program may write --------------------------------------------- */

/* Whether p holds any page of [lo, hi) as written code. */
static bool pages_in(const run_process *p, uint64_t lo, uint64_t hi)
{
    for (size_t i = 0; i < p->npages; i++)
        if (p->pages[i].addr < hi && lo < p->pages[i].addr + PAGE)
            return true;
    return false;
}

static void drop_pages(run_process *p, uint64_t lo, uint64_t hi)
{
    size_t n = 0;
    for (size_t i = 0; i < p->npages; i++) {
        if (p->pages[i].addr + PAGE <= lo || p->pages[i].addr >= hi)
            p->pages[n++] = p->pages[i];
        else
            free(p->pages[i].written);
    }
    p->npages = n;
}

/* Records [lo, hi) as code the program writes, now data (the program
 * asked for prot); false when memory runs out. */
static bool hold_pages(run_process *p, uint64_t lo, uint64_t hi, int prot)
{
    for (uint64_t a = page_of(lo); a < hi; a += PAGE) {
        if (page_at(p, a))
            continue;
        if (!run_grow((void **)&p->pages, &p->pages_cap, p->npages, sizeof *p->pages))
            return false;
        size_t i = p->npages;
        while (i > 0 && p->pages[i - 1].addr > a) {
            p->pages[i] = p->pages[i - 1];
            i--;
        }
        p->pages[i] = (run_page){ .addr = a, .prot = prot, .data = true };
        p->npages++;
    }
    return true;
}

/* Takes [lo, hi) in hand as code the program writes: data until it runs. */
static pk_status hold_as_data(run_engine *e, run_thread *t, uint64_t lo, uint64_t hi, int prot,
                              pk_error *err)
{
    if (!hold_pages(t->proc, lo, hi, prot))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    return run_protect(e, t, page_of(lo), hi - page_of(lo), prot & ~PROT_EXEC, err);
}

/* ---- keeping up with the program's mappings ------------------------------------------ */

/* Scans and patches every executable mapping not covered yet. */
static pk_status sync_maps(run_engine *e, run_thread *t, bool fresh, pk_error *err)
{
    run_process *p = t->proc;
    size_t n;
    run_mapping *maps = read_maps(p->pid, &n);
    pk_status s = PK_OK;
    for (size_t i = 0; i < n && s == PK_OK; i++) {
        const run_mapping *m = &maps[i];
        if (!(m->prot & PROT_EXEC) || (m->path && strcmp(m->path, "[vsyscall]") == 0))
            continue;
        /* Not patched (docs/run.md): shared memory (an INT3 written there
         * would reach the file, or another process), and the stack, whose
         * pages come as it grows. */
        if (m->shared || (m->path && strcmp(m->path, "[stack]") == 0)) {
            if (e->opts->trace && !covered_until(p, m->start))
                run_log(e, "[%d] not patched: %s memory at 0x%llx", (int)p->pid,
                        m->shared ? "shared" : "stack", (unsigned long long)m->start);
            if (!cover(p, m->start, m->end))
                s = pk_fail(err, PK_ERR_NOMEM, "out of memory");
            continue;
        }
        /* Written code: scanned when it runs. */
        bool written = (m->prot & PROT_WRITE) || !m->path ||
                       (m->path[0] != '/' && strcmp(m->path, "[vdso]") != 0);
        for (uint64_t a = m->start; a < m->end && s == PK_OK;) {
            uint64_t until = covered_until(p, a);
            if (!until)
                until = busy_until(p, a);
            if (until) {
                a = until;
                continue;
            }
            uint64_t b = a;
            while (b < m->end && !covered_until(p, b) && !busy_until(p, b))
                b += PAGE;
            if (b > m->end)
                b = m->end;
            /* A file's scan (NULL: no file, or not the one mapped). */
            run_scan_cache *c = written ? NULL : file_scan(e, m);
            if (c && fresh && !e->opts->int3_only)
                s = place_jumps(e, t, c, maps, n, m, a, b, err);
            if (s == PK_OK)
                s = written ? hold_as_data(e, t, a, b, m->prot, err)
                            : scan_range(e, p, m, c, a, b, a, b, 0, err);
            if (s == PK_OK && !cover(p, a, b))
                s = pk_fail(err, PK_ERR_NOMEM, "out of memory");
            a = b;
        }
    }
    free_maps(maps, n);
    sort_tables(p);
    return s;
}

/* The range a filtered call changes, known at its entry: the old range
 * of mprotect, munmap, mremap and mmap with MAP_FIXED; 0 for a plain mmap. */
static bool call_range(const run_thread *t, uint64_t *lo, uint64_t *hi)
{
    const uint64_t *a = t->sc_args;
    bool fixed = t->sc_nr == RUN_SC_MMAP && (a[3] & MAP_FIXED);
    if (t->sc_nr != RUN_SC_MPROTECT && t->sc_nr != RUN_SC_MUNMAP &&
        t->sc_nr != RUN_SC_MREMAP && !fixed)
        return false;
    *lo = page_of(a[0]);
    *hi = (a[0] + a[1] + PAGE - 1) & ~(PAGE - 1);
    return *lo < *hi;
}

pk_status run_code_failed(run_engine *e, run_thread *t, pk_error *err)
{
    run_process *p = t->proc;
    uint64_t lo, hi;
    if (!t->sc_exec_held || !call_range(t, &lo, &hi)) {
        run_code_settle(p, t->tid);
        return PK_OK;
    }
    /* An mprotect that failed part way (a hole: ENOMEM) changed the pages
     * before it: those that now have the protection asked for, less
     * PROT_EXEC, from lo on, are taken in hand as if it had stopped there. */
    int want = (int)t->sc_args[2] & ~PROT_EXEC;
    size_t n;
    run_mapping *maps = read_maps(p->pid, &n);
    uint64_t end = lo;
    for (size_t i = 0; i < n; i++)
        if (maps[i].start <= end && end < maps[i].end && maps[i].prot == want &&
            !maps[i].shared)
            end = maps[i].end;
    free_maps(maps, n);
    if (end > hi)
        end = hi;
    if (end == lo) {
        run_code_settle(p, t->tid);
        return PK_OK;
    }
    t->sc_args[1] = end - lo;
    t->sc_ret = 0;
    return run_code_sync(e, t, err);
}

void run_code_settle(run_process *p, pid_t tid)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nbusy; i++)
        if (p->busy_tid[i] != tid) {
            p->busy[n] = p->busy[i];
            p->busy_tid[n++] = p->busy_tid[i];
        }
    p->nbusy = n;
}

pk_status run_code_enter(run_engine *e, run_thread *t, pk_error *err)
{
    (void)e;
    run_process *p = t->proc;
    uint64_t lo, hi;
    t->sc_prot = -1;
    t->sc_exec_held = false;
    if (!call_range(t, &lo, &hi))
        return PK_OK;
    if (p->nbusy == RUN_BUSY_MAX)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "too many threads changing code at once");
    /* Until it returns, no other thread's sync takes this range in hand. */
    p->busy[p->nbusy] = (run_range){ lo, hi };
    p->busy_tid[p->nbusy++] = t->tid;
    if (t->sc_nr == RUN_SC_MREMAP) {
        /* The pages move with their contents: the program's own bytes, and
         * the protection it asked for, go with them. */
        run_page *pg = page_at(p, lo);
        t->sc_prot = pg ? pg->prot : -1;
        unpatch(p, lo, hi, true);
    }
    const uint64_t *a = t->sc_args;
    bool unchanged_code = !(a[2] & PROT_WRITE) && !pages_in(p, lo, hi) &&
                          covered_until(p, lo) >= hi;
    if (t->sc_nr == RUN_SC_MPROTECT && (a[2] & PROT_EXEC) && !unchanged_code) {
        /* It makes memory executable that the monitor has not scanned as it
         * is (a W^X JIT's, written code, code made writable): the call runs
         * without PROT_EXEC, so that no thread runs those bytes before they
         * are scanned, not even between its return and the monitor's stop
         * there (run_code_sync holds them as data). */
        struct user_regs_struct r;
        PK_CHECK(run_get_regs(t, &r, err));
        r.rdx &= ~(unsigned long long)PROT_EXEC; /* prot, in both ABIs */
        PK_CHECK(run_set_regs(t, &r, err));
        t->sc_exec_held = true;
    }
    return PK_OK;
}

pk_status run_code_sync(run_engine *e, run_thread *t, pk_error *err)
{
    run_process *p = t->proc;
    uint64_t lo = 0, hi = 0, lo2 = 0, hi2 = 0;
    const uint64_t *a = t->sc_args;
    bool restore = false, known = call_range(t, &lo, &hi);
    run_code_settle(p, t->tid);
    switch (t->sc_nr) {
    case RUN_SC_MMAP:
        /* New memory, over whatever was there with MAP_FIXED. Without it, the
         * memory was free: a range already covered was taken in hand by
         * another thread's sync since. */
        lo = page_of((uint64_t)t->sc_ret);
        hi = (lo + a[1] + PAGE - 1) & ~(PAGE - 1);
        if (!known && run_code_touches(p, lo, hi - lo))
            lo = hi = 0;
        break;
    case RUN_SC_MPROTECT:
        /* Still code the program could not have written since it was
         * scanned: the patches stay (and threads run on through them).
         * Else the program's own bytes back (text relocations and JITs
         * rewrite them), and scanned again where it is code. */
        if (!t->sc_exec_held && (a[2] & PROT_EXEC) && !(a[2] & PROT_WRITE) &&
            !pages_in(p, lo, hi))
            lo = hi = 0;
        restore = true;
        break;
    case RUN_SC_MREMAP:
        lo2 = page_of((uint64_t)t->sc_ret);
        hi2 = (lo2 + a[2] + PAGE - 1) & ~(PAGE - 1);
        break;
    }
    long nr = t->sc_nr;
    t->sc_nr = RUN_SC_OTHER;
    for (int k = 0; k < 2; k++) {
        uint64_t l = k ? lo2 : lo, h = k ? hi2 : hi;
        if (l >= h)
            continue;
        drop_pages(p, l, h);
        /* Written code whose execute permission the call did not give
         * (run_code_enter): data until it runs. */
        bool held = k == 0 && t->sc_exec_held;
        /* mremap's new range: any INT3 there is one another thread's sync
         * put over the bytes moved in. */
        unpatch(p, l, h, restore || k == 1);
        if (!uncover_range(p, l, h) || (held && (!hold_pages(p, l, h, (int)a[2]) ||
                                                 !cover(p, l, h))))
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    if (nr == RUN_SC_MREMAP && t->sc_prot >= 0 && lo2 < hi2)
        PK_CHECK(run_protect(e, t, lo2, hi2 - lo2, t->sc_prot, err));
    /* Jumps go only into code no thread can be running yet: a new program,
     * new memory. Code that may have run takes INT3s: a thread may stand
     * between instructions a jump would move. */
    return sync_maps(e, t, nr == RUN_SC_OTHER || nr == RUN_SC_MMAP, err);
}

/* ---- faults on written code ---------------------------------------------------- */

/* Scans page pg as it stands and patches it: swept linearly from a little
 * before (keeping what starts in the page) and by recursive descent from
 * entry, where it is run. */
static pk_status rescan_page(run_engine *e, run_process *p, run_page *pg, uint64_t entry,
                             pk_error *err)
{
    uint64_t a = pg->addr;
    /* Context from the neighbours when they are written code too. */
    uint64_t lo = page_at(p, a - PAGE) ? a - 64 : a;
    uint64_t hi = page_at(p, a + PAGE) ? a + PAGE + 16 : a + PAGE;
    run_mapping m = { .start = lo, .end = hi, .prot = pg->prot };
    if (entry < lo || entry >= hi)
        entry = a;
    pk_status s = scan_range(e, p, &m, NULL, lo, hi, a, a + PAGE, entry, err);
    sort_tables(p);
    return s;
}

/* Marks the bytes the instruction at rip stores to, at addr, in pg. */
static void note_store(run_page *pg, const run_insn *ri, uint64_t addr)
{
    unsigned size = 1;
    for (unsigned i = 0; ri && i < ri->insn.operand_count_visible; i++)
        if (ri->ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
            (ri->ops[i].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE))
            size = ri->ops[i].size / 8 ? ri->ops[i].size / 8 : 1;
    if (!pg->written && !(pg->written = calloc(PAGE / 8, 1)))
        return;
    for (uint64_t b = addr; b < addr + size && b < pg->addr + PAGE; b++)
        if (b >= pg->addr)
            pg->written[(b - pg->addr) / 8] |= (uint8_t)(1u << ((b - pg->addr) % 8));
}

/* Whether instruction ri (NULL: one that does not decode) stores to addr:
 * a memory operand it writes, with t's registers, covers it (a stack push
 * writes below RSP). */
static bool stores_at(run_thread *t, const run_insn *ri, uint64_t addr)
{
    struct user_regs_struct r;
    pk_error err;
    if (!ri || run_get_regs(t, &r, &err) != PK_OK)
        return false;
    const unsigned long long gpr[16] = { r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                                         r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15 };
    ZydisRegisterContext ctx;
    memset(&ctx, 0, sizeof ctx);
    for (unsigned i = 0; i < 16; i++) {
        ctx.values[ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, (ZyanU8)i)] = gpr[i];
        ctx.values[ZydisRegisterEncode(ZYDIS_REGCLASS_GPR32, (ZyanU8)i)] = (uint32_t)gpr[i];
    }
    for (unsigned i = 0; i < ri->insn.operand_count; i++) {
        const ZydisDecodedOperand *op = &ri->ops[i];
        ZyanU64 ea;
        if (op->type != ZYDIS_OPERAND_TYPE_MEMORY || op->mem.type != ZYDIS_MEMOP_TYPE_MEM ||
            !(op->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) ||
            ZYAN_FAILED(ZydisCalcAbsoluteAddressEx(&ri->insn, op, ri->at.site, &ctx, &ea)))
            continue;
        if (op->mem.segment == ZYDIS_REGISTER_FS)
            ea += r.fs_base;
        else if (op->mem.segment == ZYDIS_REGISTER_GS)
            ea += r.gs_base;
        uint64_t size = op->size / 8 ? op->size / 8 : 1;
        if ((addr >= ea && addr - ea < size) || (addr < ea && ea - addr <= size))
            return true;
    }
    return false;
}

bool run_code_fault(run_engine *e, run_thread *t, uint64_t addr, uint64_t rip, pk_error *err,
                    pk_status *status)
{
    run_process *p = t->proc;
    run_page *pg = page_at(p, addr);
    if (!pg) {
        /* A call of another thread's is changing the range (without
         * PROT_EXEC: run_code_enter): the access runs again once the
         * monitor has taken the call's return in hand. */
        return busy_until(p, addr) != 0;
    }
    uint64_t a = pg->addr;
    *status = PK_OK;
    run_insn decoded;
    const run_insn *ri = run_decode(e, p, rip, &decoded) ? &decoded : NULL;
    /* A fetch faults at the instruction, or where it crosses into the
     * page; a store anywhere, the instruction's own bytes too. */
    bool fetch = (addr == rip || (addr == a && rip < a && a - rip < 16)) &&
                 !stores_at(t, ri, addr);
    if (fetch && !pg->data)
        return true; /* another thread made it code meanwhile: run it */
    if (fetch) {
        /* Run: scanned from where it is entered before anything runs. No
         * other thread writes it meanwhile: it is read-only until then (a
         * lone thread cannot). */
        e->stats->exec_faults++;
        if (e->opts->trace)
            run_log(e, "[%d] 0x%llx runs written code at 0x%llx: scanned", (int)t->tid,
                    (unsigned long long)rip, (unsigned long long)a);
        pg->data = false;
        if ((pg->prot & PROT_WRITE) && p->threads > 1)
            *status = run_protect(e, t, a, PAGE, pg->prot & ~(PROT_WRITE | PROT_EXEC), err);
        if (*status == PK_OK)
            *status = rescan_page(e, p, pg, rip, err);
        if (*status == PK_OK)
            *status = run_protect(e, t, a, PAGE, pg->prot & ~PROT_WRITE, err);
        return true;
    }
    if (!(pg->prot & PROT_WRITE))
        return false; /* the program's own: it may not write there */
    if (pg->data)
        return true; /* another thread made it data meanwhile: write */
    e->stats->write_faults++;
    if (e->opts->trace)
        run_log(e, "[%d] 0x%llx writes code at 0x%llx: now data", (int)t->tid,
                (unsigned long long)rip, (unsigned long long)addr);
    note_store(pg, ri, addr);
    bool copyable = ri && run_copyable(ri);
    uint8_t len = copyable ? ri->at.len : 16;
    if (rip < a + PAGE && rip + len > a) {
        /* It writes a page it stands on: the page becomes data like any
         * other, and the instruction runs once from a copy out of line, so
         * no thread runs the page unpatched meanwhile. */
        bool started = false;
        if (copyable) {
            pg->data = true;
            *status = run_protect(e, t, a, PAGE, pg->prot & ~PROT_EXEC, err);
            unpatch(p, a, a + PAGE, true);
            if (*status == PK_OK)
                *status = run_copy_step(e, t, ri, &started, err);
            if (*status != PK_OK || started)
                return true;
            pg->data = false;
        }
        /* A branch (a CALL pushing onto the page), or an operand a copy
         * cannot reach: stepped with the page open (run_code_write_done). */
        unpatch(p, a, a + PAGE, true);
        *status = run_protect(e, t, a, PAGE, pg->prot, err);
        t->pending = RUN_WRITE_STEP;
        t->step_page = a;
        t->step_from = rip;
        return true;
    }
    /* Data from now on; no thread runs it while its bytes go back. */
    pg->data = true;
    *status = run_protect(e, t, a, PAGE, pg->prot & ~PROT_EXEC, err);
    unpatch(p, a, a + PAGE, true);
    return true;
}

pk_status run_code_write_done(run_engine *e, run_thread *t, uint64_t rip, pk_error *err)
{
    run_process *p = t->proc;
    t->pending = RUN_NOTHING;
    run_page *pg = page_at(p, t->step_page);
    if (!pg)
        return PK_OK;
    PK_CHECK(rescan_page(e, p, pg, rip, err));
    return run_protect(e, t, pg->addr, PAGE, pg->prot & ~PROT_WRITE, err);
}
