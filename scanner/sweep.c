/* popek — the linear sweep (parallel, stitched) and recursive descent.
 *
 * Linear sweep: a region is cut into chunks; each worker sweeps a chunk from
 * its first byte and records where its instructions start within the first
 * SYNC_WINDOW bytes. Stitching walks the chunks in order: the true stream
 * (the one that began at the region's start) arrives at some position at or
 * past the chunk's start; once that position is one of the chunk's recorded
 * starts, both streams decode the same bytes the same way from there on, so
 * the chunk's results after that point are the true stream's. Until then the
 * stitcher steps the true stream itself. A chunk that never meets it within
 * the window is swept again as a continuation. The result is exactly that of
 * pk_scan_region_reference.
 *
 * Runs of CC bytes are taken in one step: each CC at an instruction start is
 * a one-byte INT3, so a run of n CC bytes is n instructions, and linker
 * padding makes these runs a large share of a kernel's instructions. Other
 * bytes that are an instruction by themselves (NOP, PUSH reg, ...) skip the
 * decoder too; see one_byte[]. */
#include "popek/scan.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal/decoder.h"
#include "internal/search.h"

enum {
    CHUNK_MIN = 256 << 10,
    PADDING_LONG_RUN = 16,
    SYNC_WINDOW = 4096,
    EV_PADDING = PK_CLASS_COUNT + 1,   /* a padding run; count = bytes */
    EV_UNDECODABLE = PK_CLASS_COUNT + 2,
    EV_TARGET = PK_CLASS_COUNT + 3,     /* an address code names; count = the address */
    EV_INDIRECT = PK_CLASS_COUNT + 4,   /* an indirect jump to unknown targets */
};

/* A sweep event: a site, a padding run or an undecodable byte, at a region
 * offset. */
typedef struct event {
    uint64_t off;
    uint64_t count;
    uint16_t kind;  /* pk_class_id or EV_* */
    uint8_t len;
} event;

typedef struct evvec {
    event *v;
    size_t n, cap;
    bool oom;
} evvec;

static void ev_push(evvec *e, uint64_t off, uint16_t kind, uint8_t len, uint64_t count)
{
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 256;
        event *v = realloc(e->v, ncap * sizeof *v);
        if (!v) {
            e->oom = true;
            return;
        }
        e->v = v;
        e->cap = ncap;
    }
    e->v[e->n++] = (event){ .off = off, .count = count, .kind = kind, .len = len };
}

/* ---- the sweeper: a decoder plus the row filter ----------------------------- */

typedef struct sweeper {
    ZydisDecoder decoder;
    const uint8_t *onebyte;     /* the row of one_byte[] for the region's mode */
    const pk_image *img;
    const pk_region *region;
    uint64_t code_lo, code_hi;  /* the span of the image's code regions */
    bool want[PK_CLASS_COUNT];
    bool candidate[ZYDIS_MNEMONIC_MAX_VALUE + 1];
} sweeper;

static pk_status filter_init(bool want[PK_CLASS_COUNT], const pk_scan_options *opts,
                             pk_error *err)
{
    unsigned sets = opts && opts->sets ? opts->sets : PK_SET_PG;
    if (sets & ~(unsigned)PK_SET_ALL)
        return pk_fail(err, PK_ERR_USAGE, "unknown set bits 0x%x", sets);
    for (unsigned i = 0; i < PK_CLASS_COUNT; i++) {
        const pk_class *c = pk_class_get((pk_class_id)i);
        want[i] = opts && opts->only ? opts->only[i] : (c->set & sets) != 0;
    }
    return PK_OK;
}

/* Bytes that are a whole instruction by themselves wherever they start one
 * (NOP, PUSH/POP reg, RET, LEAVE, PUSHF, CLI, ...), asked of Zydis once per
 * mode: a byte qualifies when it decodes to a one-byte instruction whatever
 * follows it (prefixes and escapes do not). Entry 0: decode normally;
 * ONE_PLAIN: a one-byte instruction of no row; ONE_CLASS + c: one of row c. */
enum { ONE_PLAIN = 1, ONE_CLASS = 2 };
static uint8_t one_byte[3][256];
static pthread_once_t one_byte_once = PTHREAD_ONCE_INIT;

_Static_assert(ONE_CLASS + PK_CLASS_COUNT <= 255, "one-byte table entries fit a byte");

static void build_one_byte_tables(void)
{
    static const uint8_t tails[][4] = {
        { 0x00, 0x00, 0x00, 0x00 }, { 0xff, 0xff, 0xff, 0xff }, { 0x0f, 0x05, 0x00, 0x00 },
        { 0x90, 0x90, 0x90, 0x90 }, { 0x66, 0x90, 0x00, 0x00 }, { 0xcc, 0xcc, 0xcc, 0xcc },
        { 0xc0, 0x00, 0x00, 0x00 }, { 0x0f, 0x1f, 0x44, 0x00 },
    };
    static const unsigned bits[3] = { 16, 32, 64 };
    for (unsigned m = 0; m < 3; m++) {
        ZydisDecoder dec;
        if (!pk_decoder_init(&dec, bits[m], true))
            continue; /* no shortcuts: every byte goes to the decoder */
        for (unsigned b = 0; b < 256; b++) {
            bool standalone = true;
            ZydisDecoderContext ctx;
            ZydisDecodedInstruction insn;
            for (unsigned t = 0; t < sizeof tails / sizeof tails[0] && standalone; t++) {
                uint8_t buf[5] = { (uint8_t)b, tails[t][0], tails[t][1], tails[t][2], tails[t][3] };
                standalone = ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, &ctx, buf,
                                                                        sizeof buf, &insn)) &&
                             insn.length == 1;
            }
            if (!standalone)
                continue;
            pk_class_id c = pk_classify(&insn);
            one_byte[m][b] = c == PK_CLASS_NONE ? ONE_PLAIN : (uint8_t)(ONE_CLASS + c);
        }
    }
}

static pk_status sweeper_init(sweeper *sw, const pk_image *img, const pk_region *r,
                              const bool want[PK_CLASS_COUNT], pk_error *err)
{
    memset(sw, 0, sizeof *sw);
    sw->img = img;
    if (img->nregions) {
        const pk_region *last = &img->regions[img->nregions - 1];
        sw->code_lo = img->regions[0].vaddr;
        sw->code_hi = last->vaddr + last->size;
    }
    if (!pk_decoder_init(&sw->decoder, r->bits, true))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot set up the Zydis decoder");
    pthread_once(&one_byte_once, build_one_byte_tables);
    sw->onebyte = one_byte[r->bits == 64 ? 2 : r->bits == 32 ? 1 : 0];
    sw->region = r;
    memcpy(sw->want, want, sizeof sw->want);
    for (unsigned i = 0; i < PK_CLASS_COUNT; i++) {
        const pk_class *c = pk_class_get((pk_class_id)i);
        if (!want[i])
            continue;
        for (unsigned m = 0; m < PK_CLASS_MAX_MNEMONICS && c->mnemonics[m]; m++)
            sw->candidate[c->mnemonics[m]] = true;
    }
    return PK_OK;
}

bool pk_int3_run_is_padding(const pk_region *r, uint64_t vaddr, uint64_t len)
{
    uint64_t end = vaddr + len;
    return len >= PADDING_LONG_RUN || end % 16 == 0 || end == r->vaddr + r->size;
}

/* ---- what decoded code says about control flow (pk_scan_options.flow) ------------- */

/* The target of a relative branch at off. The new IP wraps at the operand
 * size (SDM vol. 2, JMP/Jcc: "EIP AND 0000FFFFH" for 16 bits), which a 66
 * prefix changes outside 64-bit mode. 32-bit code is taken as flat (address
 * = EIP); 16-bit code as running in a segment based at a multiple of 64 KiB
 * below it (address = base + IP). */
static uint64_t branch_target(const pk_region *r, uint64_t off,
                              const ZydisDecodedInstruction *insn)
{
    uint64_t target = r->vaddr + off + insn->length + (uint64_t)insn->raw.imm[0].value.s;
    if (r->bits == 16 && insn->operand_width == 16)
        return (target & 0xFFFF) | ((r->vaddr + off) & ~(uint64_t)0xFFFF);
    if (r->bits == 32 && insn->operand_width == 16)
        return target & 0xFFFF;
    return r->bits == 64 ? target : target & 0xFFFFFFFFu;
}

static bool is_direct_branch(const ZydisDecodedInstruction *insn)
{
    return insn->meta.branch_type != ZYDIS_BRANCH_TYPE_NONE &&
           insn->meta.branch_type != ZYDIS_BRANCH_TYPE_FAR &&
           (insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) && insn->raw.imm[0].is_relative;
}

/* Calls fn(ctx, addr) for every code address the instruction at off names:
 * a relative branch's target, a RIP-relative operand's address, an
 * immediate or displacement whose value lies in code (a function pointer
 * loaded with `mov $f, %edi`, a table indexed by a register). Values in the
 * span of the code regions are reported; the caller drops those in gaps. */
static void named_addresses(const sweeper *sw, uint64_t off, const ZydisDecodedInstruction *insn,
                            void (*fn)(void *ctx, uint64_t addr), void *ctx)
{
    const pk_region *r = sw->region;
    for (unsigned i = 0; i < 2; i++) {
        if (!insn->raw.imm[i].size)
            continue;
        if (insn->raw.imm[i].is_relative) {
            fn(ctx, branch_target(r, off, insn));
            continue;
        }
        uint64_t v = insn->raw.imm[i].is_signed ? (uint64_t)insn->raw.imm[i].value.s
                                                : insn->raw.imm[i].value.u;
        if (r->bits != 64)
            v &= 0xFFFFFFFFu; /* push $f at 0xd0000000 is sign-extended */
        if (v - sw->code_lo < sw->code_hi - sw->code_lo)
            fn(ctx, v);
    }
    if (!insn->raw.disp.size)
        return;
    uint64_t v = (uint64_t)insn->raw.disp.value;
    bool rip_relative = r->bits == 64 && (insn->attributes & ZYDIS_ATTRIB_HAS_MODRM) &&
                        insn->raw.modrm.mod == 0 && insn->raw.modrm.rm == 5;
    if (rip_relative) {
        v += r->vaddr + off + insn->length;
        if (insn->address_width == 32)
            v &= 0xFFFFFFFFu;
    } else if (r->bits != 64) {
        v &= 0xFFFFFFFFu;
    }
    if (v - sw->code_lo < sw->code_hi - sw->code_lo)
        fn(ctx, v);
}

/* An indirect near JMP whose targets decoding cannot know: through a
 * register or a table indexed by one (a switch's jump table). A jump
 * through one fixed pointer (`jmp *f@GOTPCREL(%rip)`, `jmp *ptr`) is a tail
 * call to a function, whose entry is known from symbols and data. */
static bool is_opaque_jump(const ZydisDecodedInstruction *insn)
{
    if (insn->meta.category != ZYDIS_CATEGORY_UNCOND_BR ||
        insn->meta.branch_type == ZYDIS_BRANCH_TYPE_FAR || (insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE))
        return false;
    if (insn->raw.modrm.mod == 3)
        return true; /* jmp *%reg */
    if (insn->raw.modrm.rm == 4) /* a SIB byte: an index, or a base register */
        return !(insn->raw.sib.base == 5 && insn->raw.modrm.mod == 0 && insn->raw.sib.index == 4);
    return !(insn->raw.modrm.mod == 0 && insn->raw.modrm.rm == 5);
}

struct target_event {
    evvec *flow;
    uint64_t off;
};

static void push_target(void *ctx, uint64_t addr)
{
    struct target_event *t = ctx;
    ev_push(t->flow, t->off, EV_TARGET, 0, addr);
}

/* Adds the flow events of the instruction at off to flow. */
static void flow_events(const sweeper *sw, uint64_t off, const ZydisDecodedInstruction *insn,
                        evvec *flow)
{
    named_addresses(sw, off, insn, push_target, &(struct target_event){ flow, off });
    if (is_opaque_jump(insn))
        ev_push(flow, off, EV_INDIRECT, insn->length, 1);
}

/* One step of the linear sweep at off: an instruction, a whole CC run, a
 * run of one-byte instructions of no row, or one undecodable byte. Returns
 * the offset of the next step and adds the instructions it took to *ninsns. */
static uint64_t sweep_step(sweeper *sw, uint64_t off, evvec *ev, evvec *flow,
                           uint64_t *ninsns)
{
    const pk_region *r = sw->region;
    const uint8_t *b = r->bytes;
    uint8_t one = sw->onebyte[b[off]];
    if (one == ONE_PLAIN) {
        uint64_t end = off + 1;
        while (end < r->size && sw->onebyte[b[end]] == ONE_PLAIN)
            end++;
        *ninsns += end - off;
        return end;
    }
    if (one >= ONE_CLASS && b[off] != 0xCC) {
        (*ninsns)++;
        if (sw->want[one - ONE_CLASS])
            ev_push(ev, off, one - ONE_CLASS, 1, 1);
        return off + 1;
    }
    if (b[off] == 0xCC) {
        uint64_t end = off + 1;
        while (end < r->size && b[end] == 0xCC)
            end++;
        uint64_t n = end - off;
        *ninsns += n;
        if (pk_int3_run_is_padding(r, r->vaddr + off, n)) {
            ev_push(ev, off, EV_PADDING, 1, n);
        } else if (sw->want[PK_CLASS_INT3]) {
            for (uint64_t i = off; i < end; i++)
                ev_push(ev, i, PK_CLASS_INT3, 1, 1);
        }
        return end;
    }
    ZydisDecoderContext ctx;
    ZydisDecodedInstruction insn;
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&sw->decoder, &ctx, b + off,
                                                  r->size - off, &insn))) {
        ev_push(ev, off, EV_UNDECODABLE, 1, 1);
        return off + 1;
    }
    (*ninsns)++;
    if (sw->candidate[insn.mnemonic]) {
        pk_class_id c = pk_classify(&insn);
        if (c != PK_CLASS_NONE && sw->want[c])
            ev_push(ev, off, (uint16_t)c, insn.length, 1);
    }
    if (flow)
        flow_events(sw, off, &insn, flow);
    return off + insn.length;
}

/* ---- linear sweep over chunks -------------------------------------------------- */

typedef struct chunk {
    size_t region;
    uint64_t start, end;     /* region offsets; the sweep starts instructions below end */
    uint64_t end_pos;        /* where the chunk's stream stopped (>= end) */
    uint64_t ninsns;
    evvec ev;
    evvec flow;              /* with pk_scan_options.flow */
    uint64_t *sync_pos;      /* instruction starts in [start, start + SYNC_WINDOW) */
    uint64_t *sync_count;    /* instructions before each of them */
    size_t nsync;
} chunk;

static pk_status sweep_chunk(const pk_image *img, const bool *want, bool flow, chunk *c,
                             pk_error *err)
{
    sweeper sw;
    PK_CHECK(sweeper_init(&sw, img, &img->regions[c->region], want, err));
    uint64_t window = c->end - c->start < SYNC_WINDOW ? c->end - c->start : SYNC_WINDOW;
    c->sync_pos = malloc(window * sizeof *c->sync_pos);
    c->sync_count = malloc(window * sizeof *c->sync_count);
    if (!c->sync_pos || !c->sync_count)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    uint64_t off = c->start;
    while (off < c->end) {
        if (off - c->start < SYNC_WINDOW) {
            c->sync_pos[c->nsync] = off;
            c->sync_count[c->nsync++] = c->ninsns;
        }
        off = sweep_step(&sw, off, &c->ev, flow ? &c->flow : NULL, &c->ninsns);
    }
    c->end_pos = off;
    if (c->ev.oom || c->flow.oom)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    return PK_OK;
}

typedef struct pool {
    const pk_image *img;
    const bool *want;
    bool flow;
    chunk *chunks;
    size_t nchunks;
    atomic_size_t next;
    atomic_uint_fast64_t bytes_done;
    uint64_t bytes_total;
    atomic_int failed;
    pk_error err;
    pk_status status;
    pthread_mutex_t lock;
} pool;

/* Sweeps chunks until none are left. The calling thread passes opts to
 * report progress between chunks; the other threads pass NULL. */
static void pool_work(pool *p, const pk_scan_options *opts)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->nchunks || atomic_load(&p->failed))
            return;
        chunk *c = &p->chunks[i];
        pk_error err;
        pk_status s = sweep_chunk(p->img, p->want, p->flow, c, &err);
        if (s != PK_OK) {
            pthread_mutex_lock(&p->lock);
            if (!atomic_exchange(&p->failed, 1)) {
                p->status = s;
                p->err = err;
            }
            pthread_mutex_unlock(&p->lock);
            return;
        }
        uint64_t done = atomic_fetch_add(&p->bytes_done, c->end - c->start) + c->end - c->start;
        if (opts && opts->progress)
            opts->progress(opts->progress_ctx, done, p->bytes_total);
    }
}

static void *pool_thread(void *arg)
{
    pool_work(arg, NULL);
    return NULL;
}

static size_t find_sync(const chunk *c, uint64_t pos)
{
    size_t i = pk_lower_bound(c->sync_pos, c->nsync, pos);
    return i < c->nsync && c->sync_pos[i] == pos ? i : SIZE_MAX;
}

static void append_from(evvec *out, const evvec *in, uint64_t off)
{
    for (size_t i = 0; i < in->n; i++)
        if (in->v[i].off >= off)
            ev_push(out, in->v[i].off, in->v[i].kind, in->v[i].len, in->v[i].count);
}

/* Appends chunk c's results to the true stream of its region, which is at
 * *pos with its events in *out and its flow events in *flow (NULL: none). */
static void stitch_chunk(sweeper *sw, chunk *c, uint64_t *pos, evvec *out, evvec *flow,
                         pk_region_stats *st)
{
    uint64_t off = *pos;
    for (;;) {
        if (off >= c->start + SYNC_WINDOW || off >= c->end) {
            /* No meeting point: continue the true stream through the chunk. */
            while (off < c->end)
                off = sweep_step(sw, off, out, flow, &st->instructions);
            break;
        }
        size_t j = find_sync(c, off);
        if (j != SIZE_MAX) {
            append_from(out, &c->ev, off);
            if (flow)
                append_from(flow, &c->flow, off);
            st->instructions += c->ninsns - c->sync_count[j];
            off = c->end_pos;
            break;
        }
        off = sweep_step(sw, off, out, flow, &st->instructions);
    }
    *pos = off;
}

static void chunk_free(chunk *c)
{
    free(c->ev.v);
    free(c->flow.v);
    free(c->sync_pos);
    free(c->sync_count);
}

static unsigned thread_count(const pk_scan_options *opts)
{
    if (opts && opts->threads)
        return opts->threads > 64 ? 64 : opts->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* Sweeps every region; per region, appends the events of the true stream to
 * evs[region] and, when flows is not NULL, its flow events to flows[region],
 * and fills stats. */
static pk_status linear_sweep(const pk_image *img, const bool *want,
                              const pk_scan_options *opts, evvec *evs, evvec *flows,
                              pk_region_stats *stats, pk_error *err)
{
    unsigned threads = thread_count(opts);
    uint64_t total = 0;
    for (size_t r = 0; r < img->nregions; r++)
        total += img->regions[r].size;
    uint64_t chunk_size = opts && opts->chunk_size ? opts->chunk_size : total / (threads * 32) + 1;
    if (chunk_size < CHUNK_MIN && !(opts && opts->chunk_size))
        chunk_size = CHUNK_MIN;

    size_t nchunks = 0;
    for (size_t r = 0; r < img->nregions; r++)
        nchunks += img->regions[r].size / chunk_size + (img->regions[r].size % chunk_size != 0);
    pool p = { .img = img, .want = want, .flow = flows != NULL, .nchunks = nchunks,
               .bytes_total = total,
               .status = PK_OK, .lock = PTHREAD_MUTEX_INITIALIZER };
    p.chunks = calloc(nchunks ? nchunks : 1, sizeof *p.chunks);
    if (!p.chunks)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t r = 0; r < img->nregions; r++) {
        uint64_t size = img->regions[r].size;
        for (uint64_t s = 0; s < size; s = p.chunks[k - 1].end)
            p.chunks[k++] = (chunk){
                .region = r, .start = s,
                .end = size - s > chunk_size ? s + chunk_size : size,
            };
    }

    pthread_t tids[64];
    unsigned started = 0;
    for (unsigned t = 1; t < threads && t < nchunks; t++)
        if (pthread_create(&tids[started], NULL, pool_thread, &p) == 0)
            started++;
    pool_work(&p, opts); /* the calling thread works too */
    for (unsigned t = 0; t < started; t++)
        pthread_join(tids[t], NULL);

    pk_status status = p.status;
    if (status != PK_OK)
        *err = p.err;
    sweeper sw;
    uint64_t pos = 0;
    for (size_t i = 0; i < nchunks && status == PK_OK; i++) {
        chunk *c = &p.chunks[i];
        if (c->start == 0) { /* a new region: its true stream starts here */
            status = sweeper_init(&sw, img, &img->regions[c->region], want, err);
            if (status != PK_OK)
                break;
            pos = 0;
        }
        stitch_chunk(&sw, c, &pos, &evs[c->region], flows ? &flows[c->region] : NULL,
                     &stats[c->region]);
        if (evs[c->region].oom || (flows && flows[c->region].oom))
            status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nchunks; i++)
        chunk_free(&p.chunks[i]);
    free(p.chunks);
    return status;
}

/* ---- the scan's flow results ------------------------------------------------------ */

struct target_mark {
    pk_scan *out;
    size_t region;          /* where the naming instruction is: tried first */
};

/* Marks addr in the target map; addresses in no region are dropped. */
static void mark_target(void *ctx, uint64_t addr)
{
    struct target_mark *m = ctx;
    const pk_image *img = m->out->img;
    const pk_region *r = &img->regions[m->region];
    if (addr - r->vaddr >= r->size && !(r = pk_image_region_at(img, addr)))
        return;
    uint64_t o = addr - r->vaddr;
    m->out->targets[r - img->regions][o >> 3] |= (uint8_t)(1u << (o & 7));
}

/* Adds the linear sweep's flow events of region ri to the scan. */
static pk_status apply_flow(pk_scan *out, size_t ri, const evvec *flow, pk_error *err)
{
    const pk_region *r = &out->img->regions[ri];
    struct target_mark m = { out, ri };
    for (size_t i = 0; i < flow->n; i++) {
        const event *e = &flow->v[i];
        if (e->kind == EV_TARGET)
            mark_target(&m, e->count);
        else if (!pk_push_address(&out->opaque_jumps, &out->nopaque_jumps, r->vaddr + e->off))
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    return PK_OK;
}

/* Sorts the opaque jumps both sweeps found and drops duplicates. */
static void sort_opaque(pk_scan *out)
{
    if (!out->nopaque_jumps)
        return;
    qsort(out->opaque_jumps, out->nopaque_jumps, sizeof *out->opaque_jumps,
          pk_compare_addresses);
    size_t n = 1;
    for (size_t i = 1; i < out->nopaque_jumps; i++)
        if (out->opaque_jumps[i] != out->opaque_jumps[n - 1])
            out->opaque_jumps[n++] = out->opaque_jumps[i];
    out->nopaque_jumps = n;
}

static bool bit_at(uint8_t *const *map, const pk_image *img, uint64_t addr)
{
    const pk_region *r = pk_image_region_at(img, addr);
    if (!map || !r)
        return false;
    uint64_t o = addr - r->vaddr;
    return map[r - img->regions][o >> 3] & (1u << (o & 7));
}

bool pk_scan_out_of_step(const pk_scan *scan, uint64_t addr, unsigned len)
{
    if (bit_at(scan->inside, scan->img, addr))
        return true;
    for (uint64_t a = addr + 1; a < addr + len; a++)
        if (bit_at(scan->reached, scan->img, a))
            return true;
    return false;
}

bool pk_scan_has_target(const pk_scan *scan, uint64_t lo, uint64_t hi)
{
    for (uint64_t a = lo; a < hi; a++) {
        const pk_region *r = pk_image_region_at(scan->img, a);
        if (!r)
            continue;
        uint64_t o = a - r->vaddr;
        if (scan->targets[r - scan->img->regions][o >> 3] & (1u << (o & 7)))
            return true;
    }
    return false;
}

/* ---- recursive descent ---------------------------------------------------------- */

typedef struct rd_state {
    const pk_image *img;
    sweeper *sw;            /* one per region */
    uint8_t **visited;      /* per region, one bit per byte: an instruction start */
    uint8_t **inside;       /* per region, one bit per byte: inside a reached instruction */
    struct rd_item { uint32_t region; uint64_t off; } *stack;
    size_t nstack, capstack;
    evvec *evs;             /* per region: sites reached */
    pk_region_stats *stats;
    pk_scan *out;           /* with flow: its target map and opaque jumps */
    bool flow;
    bool oom;
} rd_state;

static void rd_push(rd_state *rd, uint64_t addr, size_t near_region)
{
    /* Prefer the current region: relocatable objects put every section at 0. */
    const pk_region *r = &rd->img->regions[near_region];
    size_t ri = near_region;
    if (addr - r->vaddr >= r->size) {
        r = pk_image_region_at(rd->img, addr);
        if (!r)
            return;
        ri = (size_t)(r - rd->img->regions);
    }
    uint64_t off = addr - r->vaddr;
    if (rd->visited[ri][off >> 3] & (1u << (off & 7)))
        return;
    if (rd->nstack == rd->capstack) {
        size_t ncap = rd->capstack ? rd->capstack * 2 : 1024;
        struct rd_item *s = realloc(rd->stack, ncap * sizeof *s);
        if (!s) {
            rd->oom = true;
            return;
        }
        rd->stack = s;
        rd->capstack = ncap;
    }
    rd->stack[rd->nstack++] = (struct rd_item){ (uint32_t)ri, off };
}

static void rd_walk(rd_state *rd, uint32_t ri, uint64_t off)
{
    const pk_region *r = &rd->img->regions[ri];
    sweeper *sw = &rd->sw[ri];
    uint8_t *visited = rd->visited[ri];
    while (off < r->size && !(visited[off >> 3] & (1u << (off & 7)))) {
        /* Falling into padding (after a call that does not return, say)
         * ends the path, as it does for the linear sweep's listing. */
        if (r->bytes[off] == 0xCC) {
            uint64_t end = off + 1;
            while (end < r->size && r->bytes[end] == 0xCC)
                end++;
            if (pk_int3_run_is_padding(r, r->vaddr + off, end - off))
                return;
        }
        ZydisDecoderContext ctx;
        ZydisDecodedInstruction insn;
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&sw->decoder, &ctx, r->bytes + off,
                                                      r->size - off, &insn)))
            return;
        visited[off >> 3] |= (uint8_t)(1u << (off & 7));
        for (uint64_t b = off + 1; b < off + insn.length; b++)
            rd->inside[ri][b >> 3] |= (uint8_t)(1u << (b & 7));
        rd->stats[ri].reached++;
        if (sw->candidate[insn.mnemonic]) {
            pk_class_id c = pk_classify(&insn);
            if (c != PK_CLASS_NONE && sw->want[c])
                ev_push(&rd->evs[ri], off, (uint16_t)c, insn.length, 1);
        }
        /* Direct near branches and calls: follow the target. */
        if (is_direct_branch(&insn))
            rd_push(rd, branch_target(r, off, &insn), ri);
        if (rd->flow) {
            named_addresses(sw, off, &insn, mark_target, &(struct target_mark){ rd->out, ri });
            if (is_opaque_jump(&insn) &&
                !pk_push_address(&rd->out->opaque_jumps, &rd->out->nopaque_jumps, r->vaddr + off))
                rd->oom = true;
        }
        if (pk_insn_ends_path(&insn))
            return;
        off += insn.length;
    }
}

/* Walks every region from the roots, adding the sites reached to evs and
 * marking, in inside[region] (allocated here, freed by the caller), the
 * bytes that lie inside a reached instruction. */
static pk_status recursive_descent(const pk_image *img, const bool *want, bool flow,
                                   evvec *evs, pk_scan *out, uint8_t **inside, pk_error *err)
{
    rd_state rd = { .img = img, .evs = evs, .stats = out->stats, .inside = inside, .out = out,
                    .flow = flow };
    pk_status status = PK_OK;
    rd.sw = calloc(img->nregions, sizeof *rd.sw);
    rd.visited = calloc(img->nregions, sizeof *rd.visited);
    if (!rd.sw || !rd.visited)
        status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < img->nregions && status == PK_OK; r++) {
        status = sweeper_init(&rd.sw[r], img, &img->regions[r], want, err);
        if (status == PK_OK && (!(rd.visited[r] = calloc(img->regions[r].size / 8 + 1, 1)) ||
                                !(inside[r] = calloc(img->regions[r].size / 8 + 1, 1))))
            status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    if (status == PK_OK) {
        if (img->has_entry)
            rd_push(&rd, img->entry, 0);
        for (size_t i = 0; i < img->nsymbols; i++)
            if (img->symbols[i].func && img->symbols[i].region >= 0)
                rd_push(&rd, img->symbols[i].addr, (size_t)img->symbols[i].region);
        while (rd.nstack && !rd.oom) {
            struct rd_item it = rd.stack[--rd.nstack];
            rd_walk(&rd, it.region, it.off);
        }
        for (size_t r = 0; r < img->nregions; r++)
            rd.oom |= evs[r].oom;
        if (rd.oom)
            status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    if (status == PK_OK && flow) { /* the scan keeps them */
        out->reached = rd.visited;
        rd.visited = NULL;
    }
    for (size_t r = 0; rd.visited && r < img->nregions; r++)
        free(rd.visited[r]);
    free(rd.visited);
    free(rd.sw);
    free(rd.stack);
    return status;
}

/* ---- results ---------------------------------------------------------------------- */

static int compare_events(const void *a, const void *b)
{
    const event *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return (x->len > y->len) - (x->len < y->len);
}

static pk_status add_sites(const pk_image *img, size_t ri, const evvec *ev, unsigned found,
                           pk_scan *out, size_t *cap, pk_error *err)
{
    const pk_region *r = &img->regions[ri];
    for (size_t i = 0; i < ev->n; i++) {
        const event *e = &ev->v[i];
        if (e->kind == EV_PADDING) {
            out->stats[ri].padding_bytes += e->count;
            out->stats[ri].padding_runs++;
            continue;
        }
        if (e->kind == EV_UNDECODABLE) {
            out->stats[ri].undecodable++;
            continue;
        }
        if (out->nsites == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            pk_site *s = realloc(out->sites, ncap * sizeof *s);
            if (!s)
                return pk_fail(err, PK_ERR_NOMEM, "out of memory");
            out->sites = s;
            *cap = ncap;
        }
        pk_site *s = &out->sites[out->nsites++];
        memset(s, 0, sizeof *s);
        s->vaddr = r->vaddr + e->off;
        s->region = (uint32_t)ri;
        s->cls = e->kind;
        s->len = e->len;
        s->found = (uint8_t)found;
        memcpy(s->bytes, r->bytes + e->off, e->len);
    }
    return PK_OK;
}

/* Merges the linear and recursive results of one region, both in address
 * order: sites at the same address and length are one site found by both.
 * inside (NULL without recursive descent) flags linear-only sites that lie
 * within a reached instruction. */
static pk_status merge_region(const pk_image *img, size_t ri, evvec *lin, evvec *rec,
                              const uint8_t *inside, pk_scan *out, size_t *cap, pk_error *err)
{
    if (rec->n)
        qsort(rec->v, rec->n, sizeof *rec->v, compare_events);
    size_t i = 0, j = 0;
    while (i < lin->n || j < rec->n) {
        event *a = i < lin->n ? &lin->v[i] : NULL, *b = j < rec->n ? &rec->v[j] : NULL;
        if (a && b && a->off == b->off && a->len == b->len && a->kind == b->kind) {
            evvec one = { .v = a, .n = 1 };
            PK_CHECK(add_sites(img, ri, &one, PK_FOUND_LINEAR | PK_FOUND_RECURSIVE, out, cap,
                               err));
            i++, j++;
        } else if (a && (!b || compare_events(a, b) <= 0)) {
            evvec one = { .v = a, .n = 1 };
            size_t before = out->nsites;
            PK_CHECK(add_sites(img, ri, &one, PK_FOUND_LINEAR, out, cap, err));
            if (out->nsites > before && inside && (inside[a->off >> 3] & (1u << (a->off & 7))))
                out->sites[before].flags |= PK_SITE_INSIDE_REACHED;
            i++;
        } else {
            evvec one = { .v = b, .n = 1 };
            PK_CHECK(add_sites(img, ri, &one, PK_FOUND_RECURSIVE, out, cap, err));
            j++;
        }
    }
    return PK_OK;
}

pk_status pk_scan_image(const pk_image *img, const pk_scan_options *opts, pk_scan *out,
                        pk_error *err)
{
    memset(out, 0, sizeof *out);
    bool want[PK_CLASS_COUNT];
    PK_CHECK(filter_init(want, opts, err));
    unsigned sweeps = opts && opts->sweeps ? opts->sweeps : PK_FOUND_LINEAR | PK_FOUND_RECURSIVE;
    if (sweeps & ~(unsigned)(PK_FOUND_LINEAR | PK_FOUND_RECURSIVE))
        return pk_fail(err, PK_ERR_USAGE, "unknown sweep bits 0x%x", sweeps);

    bool flow = opts && opts->flow;
    size_t n = img->nregions;
    evvec *lin = calloc(n ? n : 1, sizeof *lin), *rec = calloc(n ? n : 1, sizeof *rec);
    evvec *flows = flow ? calloc(n ? n : 1, sizeof *flows) : NULL;
    uint8_t **inside = calloc(n ? n : 1, sizeof *inside);
    out->img = img;
    out->stats = calloc(n ? n : 1, sizeof *out->stats);
    out->nregions = n;
    pk_status status = PK_OK;
    if (!lin || !rec || !inside || !out->stats || (flow && !flows))
        status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    if (status == PK_OK && flow) {
        out->targets = calloc(n ? n : 1, sizeof *out->targets);
        for (size_t r = 0; out->targets && r < n && status == PK_OK; r++)
            if (!(out->targets[r] = calloc(img->regions[r].size / 8 + 1, 1)))
                status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
        if (!out->targets)
            status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    if (status == PK_OK && (sweeps & PK_FOUND_LINEAR))
        status = linear_sweep(img, want, opts, lin, flows, out->stats, err);
    if (status == PK_OK && (sweeps & PK_FOUND_RECURSIVE))
        status = recursive_descent(img, want, flow, rec, out, inside, err);
    size_t cap = 0;
    for (size_t r = 0; r < n && status == PK_OK; r++) {
        status = merge_region(img, r, &lin[r], &rec[r], inside ? inside[r] : NULL, out, &cap,
                              err);
        if (status == PK_OK && flow)
            status = apply_flow(out, r, &flows[r], err);
    }
    if (status == PK_OK)
        sort_opaque(out);
    if (status == PK_OK && flow && (sweeps & PK_FOUND_RECURSIVE)) { /* the scan keeps it */
        out->inside = inside;
        inside = NULL;
    }
    for (size_t r = 0; r < n; r++) {
        if (lin) free(lin[r].v);
        if (rec) free(rec[r].v);
        if (flows) free(flows[r].v);
        if (inside) free(inside[r]);
    }
    free(lin);
    free(rec);
    free(flows);
    free(inside);
    if (status != PK_OK)
        pk_scan_free(out);
    return status;
}

void pk_scan_free(pk_scan *scan)
{
    for (size_t r = 0; r < scan->nregions; r++) {
        if (scan->targets) free(scan->targets[r]);
        if (scan->reached) free(scan->reached[r]);
        if (scan->inside) free(scan->inside[r]);
    }
    free(scan->targets);
    free(scan->reached);
    free(scan->inside);
    free(scan->opaque_jumps);
    free(scan->sites);
    free(scan->stats);
    memset(scan, 0, sizeof *scan);
}

pk_status pk_scan_region_reference(const pk_image *img, size_t region,
                                   const pk_scan_options *opts, pk_scan *out,
                                   pk_error *err)
{
    memset(out, 0, sizeof *out);
    if (region >= img->nregions)
        return pk_fail(err, PK_ERR_USAGE, "no region %zu", region);
    bool want[PK_CLASS_COUNT];
    PK_CHECK(filter_init(want, opts, err));
    /* Everything wanted while sweeping, so that every INT3 is seen; the
     * filter applies afterwards, when runs of them are known. */
    bool all[PK_CLASS_COUNT];
    memset(all, 1, sizeof all);
    sweeper sw;
    const pk_region *r = &img->regions[region];
    PK_CHECK(sweeper_init(&sw, img, r, all, err));
    out->stats = calloc(img->nregions, sizeof *out->stats);
    if (!out->stats)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    out->nregions = img->nregions;
    pk_region_stats *st = &out->stats[region];

    evvec raw = { 0 }, ev = { 0 };
    for (uint64_t off = 0; off < r->size;) {
        ZydisDecoderContext ctx;
        ZydisDecodedInstruction insn;
        if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&sw.decoder, &ctx, r->bytes + off,
                                                      r->size - off, &insn))) {
            ev_push(&raw, off, EV_UNDECODABLE, 1, 1);
            off++;
            continue;
        }
        st->instructions++;
        pk_class_id c = pk_classify(&insn);
        if (c != PK_CLASS_NONE)
            ev_push(&raw, off, (uint16_t)c, insn.length, 1);
        off += insn.length;
    }
    /* Group one-byte INT3s (plain CC bytes) into runs. */
    for (size_t i = 0; i < raw.n; i++) {
        event *e = &raw.v[i];
        bool plain_cc = e->kind == PK_CLASS_INT3 && e->len == 1;
        if (!plain_cc) {
            if (e->kind == EV_UNDECODABLE || want[e->kind])
                ev_push(&ev, e->off, e->kind, e->len, 1);
            continue;
        }
        size_t j = i + 1;
        while (j < raw.n && raw.v[j].kind == PK_CLASS_INT3 && raw.v[j].len == 1 &&
               raw.v[j].off == raw.v[j - 1].off + 1)
            j++;
        uint64_t n = j - i;
        if (pk_int3_run_is_padding(r, r->vaddr + e->off, n))
            ev_push(&ev, e->off, EV_PADDING, 1, n);
        else if (want[PK_CLASS_INT3])
            for (size_t k = i; k < j; k++)
                ev_push(&ev, raw.v[k].off, PK_CLASS_INT3, 1, 1);
        i = j - 1;
    }
    size_t cap = 0;
    pk_status status = raw.oom || ev.oom ? pk_fail(err, PK_ERR_NOMEM, "out of memory")
                                         : add_sites(img, region, &ev, PK_FOUND_LINEAR, out,
                                                     &cap, err);
    free(raw.v);
    free(ev.v);
    if (status != PK_OK)
        pk_scan_free(out);
    return status;
}
