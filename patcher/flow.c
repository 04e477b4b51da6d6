/* popek — what the file says of control flow (flow.h): the addresses
 * control reaches that decoding cannot see, the bytes that must keep their
 * address, and where functions begin and end.
 *
 * Targets, each source counted in pk_flow.from:
 *  - symbols in code and the entry point;
 *  - relocations (SHT_RELA, SHT_REL, SHT_RELR): RELATIVE and IRELATIVE
 *    addends, S+A of absolute ones, S of GOT and PLT slots;
 *  - data pointers: every aligned pointer-sized value of every allocated
 *    section with bytes (code too: literal pools) that falls in code;
 *  - landing pads: each FDE of .eh_frame leads to an LSDA in
 *    .gcc_except_table, whose call-site records name them; a personality
 *    routine a CIE names directly counts here too;
 *  - a Linux kernel's tables (ktables below), which also pin bytes, and
 *    .altinstructions (img->alts), which only pins.
 * Resumes, apart from targets: where a kernel's exception table sends a
 * faulting instruction (ktables: __ex_table).
 * Function extents: FDEs, else sized function symbols, else unsized ones
 * (System.map) up to the next symbol of their region; a weaker source's
 * range that overlaps a stronger one's is dropped. Overlapping FDEs merge:
 * the union is a larger extent, so the patcher's test "does this function
 * jump somewhere unknown" only covers more code.
 *
 * When in doubt, add a target or pin. What cannot be read pins what it
 * covers where that is known (an unreadable LSDA pins its whole function),
 * and fails with PK_ERR_FORMAT where it is not (an .eh_frame that cannot be
 * walked, a kernel table no known layout fits); a caller then has INT3.
 * Relocatable objects get symbols, relocations and data pointers only:
 * every section starts at 0 and their tables hold zeros until linked.
 *
 * .eh_frame is walked here, not with libdw: dwarf_next_cfi only frames the
 * entries (an FDE's pointers and LSDA still need decoding) and
 * dwarf_cfi_addrframe answers one address at a time; neither gives the
 * LSDA. Targets and pins are radix-sorted: a vmlinux has hundreds of
 * thousands. */
#include "popek/flow.h"

#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>

#include "../scanner/internal/decoder.h"
#include "../scanner/internal/search.h"

/* An allocated section with bytes in the file. */
typedef struct span {
    uint64_t lo, hi;
    const uint8_t *bytes;
} span;

typedef struct ctx {
    const pk_image *img;
    pk_flow *flow;
    pk_error *err;
    unsigned machine, ptr;      /* e_machine; pointer size, 4 or 8 (the ELF class) */
    bool relocatable;           /* ET_REL: every section at 0 */
    size_t shstrndx;
    span *spans;                /* sorted by lo */
    size_t nspans;
    uint64_t code_lo, code_last; /* [code_lo, code_lo + code_last]: every region */
    const pk_region *last;      /* the region code_at found last */
    uint64_t got;               /* the base of DW_EH_PE_datarel, 0 when none */
    pk_range *fdes;             /* FDE ranges */
    size_t nfdes, cap_fdes, cap_targets, cap_resumes, cap_pinned, cap_anchored, cap_looked_up;
    size_t cap_functions;
    ZydisDecoder dec[3];        /* 16-, 32-, 64-bit */
} ctx;

/* Makes room for one more element of arr (n used of cap), or returns
 * PK_ERR_NOMEM from the caller. */
#define RESERVE(c, arr, n, cap)                                                \
    do {                                                                       \
        if ((n) == (cap)) {                                                    \
            size_t ncap_ = (cap) ? (cap) * 2 : 1024;                           \
            void *p_ = realloc((arr), ncap_ * sizeof *(arr));                  \
            if (!p_)                                                           \
                return pk_fail((c)->err, PK_ERR_NOMEM, "out of memory");       \
            (arr) = p_;                                                        \
            (cap) = ncap_;                                                     \
        }                                                                      \
    } while (0)

/* Little-endian reads (popek runs on x86). */
static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    memcpy(&v, p, n);
    return v;
}

static int64_t rd_s32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- sorting and searching ranges ------------------------------------------ */

/* Sorts n records (uint64_t or pk_range) by the uint64_t each begins
 * with: an LSD radix sort in 11-bit digits over the bits that differ
 * (kernel addresses differ in 26: three passes), nothing when sorted. */
static pk_status sort_by_key(ctx *c, void *base, size_t n, size_t size)
{
    uint8_t *src = base;
    uint64_t all = UINT64_MAX, any = 0, prev = 0;
    bool sorted = true;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = rd(src + i * size, 8);
        sorted &= k >= prev;
        prev = k;
        all &= k;
        any |= k;
    }
    if (sorted)
        return PK_OK;
    uint8_t *spare = malloc(n * size), *dst = spare;
    size_t *pos = malloc(2048 * sizeof *pos);
    if (!spare || !pos) {
        free(spare);
        free(pos);
        return pk_fail(c->err, PK_ERR_NOMEM, "out of memory");
    }
    uint64_t differ = all ^ any;
    for (unsigned shift = (unsigned)__builtin_ctzll(differ); shift < 64 && differ >> shift;
         shift += 11) {
        size_t sum = 0;
        memset(pos, 0, 2048 * sizeof *pos);
        for (size_t i = 0; i < n; i++)
            pos[rd(src + i * size, 8) >> shift & 2047]++;
        for (unsigned d = 0; d < 2048; d++) {
            size_t t = pos[d];
            pos[d] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) {
            uint8_t *to = dst + pos[rd(src + i * size, 8) >> shift & 2047]++ * size;
            if (size == 8) /* constant sizes: plain moves, not calls */
                memcpy(to, src + i * size, 8);
            else
                memcpy(to, src + i * size, sizeof(pk_range));
        }
        uint8_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != base)
        memcpy(base, src, n * size);
    free(spare);
    free(pos);
    return PK_OK;
}

/* Sorts r[0, *n) and merges ranges that overlap (or, with touching, that
 * meet). */
static pk_status merge_ranges(ctx *c, pk_range *r, size_t *n, bool touching)
{
    PK_CHECK(sort_by_key(c, r, *n, sizeof *r));
    size_t out = 0;
    for (size_t i = 0; i < *n; i++) {
        if (out && (r[i].lo < r[out - 1].hi || (touching && r[i].lo == r[out - 1].hi))) {
            if (r[i].hi > r[out - 1].hi)
                r[out - 1].hi = r[i].hi;
        } else {
            r[out++] = r[i];
        }
    }
    *n = out;
    return PK_OK;
}

/* The first of r[0, n) (sorted, disjoint) that ends above addr. */
static size_t first_ending_above(const pk_range *r, size_t n, uint64_t addr)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].hi <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool overlaps(const pk_range *r, size_t n, uint64_t lo, uint64_t hi)
{
    size_t i = first_ending_above(r, n, lo);
    return lo < hi && i < n && r[i].lo < hi;
}

/* ---- the image's bytes by address ------------------------------------------ */

static const pk_region *code_at(ctx *c, uint64_t a)
{
    const pk_region *r = c->last;
    if (r && a - r->vaddr < r->size)
        return r; /* tables and pointers cluster: most land where the last did */
    if (a - c->code_lo > c->code_last || !(r = pk_image_region_at(c->img, a)))
        return NULL;
    return c->last = r;
}

static const span *span_at(const ctx *c, uint64_t a)
{
    size_t lo = 0, hi = c->nspans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->spans[mid].lo <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo && a < c->spans[lo - 1].hi ? &c->spans[lo - 1] : NULL;
}

/* The n bytes at a, or NULL unless one section holds them all. */
static const uint8_t *bytes_at(const ctx *c, uint64_t a, uint64_t n)
{
    const span *s = span_at(c, a);
    return s && n <= s->hi - a ? s->bytes + (a - s->lo) : NULL;
}

static const char *section_name(const ctx *c, const GElf_Shdr *sh)
{
    const char *name = elf_strptr(c->img->elf, c->shstrndx, sh->sh_name);
    return name ? name : "";
}

/* The bytes of an allocated section, NULL for none. */
static const uint8_t *section_bytes(const ctx *c, const GElf_Shdr *sh)
{
    const pk_image *img = c->img;
    if (sh->sh_type == SHT_NOBITS || !sh->sh_size || sh->sh_offset > img->data_len ||
        sh->sh_size > img->data_len - sh->sh_offset)
        return NULL;
    return img->data + sh->sh_offset;
}

/* The allocated section called name with bytes, or NULL. */
static const uint8_t *find_section(const ctx *c, const char *name, GElf_Shdr *sh)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(c->img->elf, scn)))
        if (gelf_getshdr(scn, sh) && (sh->sh_flags & SHF_ALLOC) &&
            !strcmp(section_name(c, sh), name))
            return section_bytes(c, sh);
    return NULL;
}

static int compare_spans(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Allocated sections with bytes, or without section headers the file part
 * of PT_LOAD segments. */
static pk_status load_spans(ctx *c, size_t shnum)
{
    Elf *elf = c->img->elf;
    size_t cap = 0;
    for (size_t i = 1; i < shnum; i++) {
        GElf_Shdr sh;
        if (!gelf_getshdr(elf_getscn(elf, i), &sh))
            return pk_fail(c->err, PK_ERR_FORMAT, "corrupt section header %zu", i);
        if (!(sh.sh_flags & SHF_ALLOC) || sh.sh_type == SHT_NOBITS || !sh.sh_size)
            continue;
        const uint8_t *b = section_bytes(c, &sh);
        if (!b)
            return pk_fail(c->err, PK_ERR_FORMAT, "section %s lies past the end of the file",
                           section_name(c, &sh));
        RESERVE(c, c->spans, c->nspans, cap);
        c->spans[c->nspans++] = (span){ sh.sh_addr, sh.sh_addr + sh.sh_size, b };
    }
    size_t phnum = 0;
    if (!shnum && elf_getphdrnum(elf, &phnum) == 0) {
        for (size_t i = 0; i < phnum; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || !ph.p_filesz ||
                ph.p_offset > c->img->data_len || ph.p_filesz > c->img->data_len - ph.p_offset)
                continue;
            RESERVE(c, c->spans, c->nspans, cap);
            c->spans[c->nspans++] =
                (span){ ph.p_vaddr, ph.p_vaddr + ph.p_filesz, c->img->data + ph.p_offset };
        }
    }
    if (c->nspans) /* qsort wants an array even for none */
        qsort(c->spans, c->nspans, sizeof *c->spans, compare_spans);
    return PK_OK;
}

/* ---- adding targets and pins ----------------------------------------------- */

/* Adds a when it is code, counting it in *count (NULL: uncounted). */
static pk_status target(ctx *c, uint64_t a, size_t *count)
{
    if (!code_at(c, a))
        return PK_OK;
    pk_flow *f = c->flow;
    RESERVE(c, f->targets, f->ntargets, c->cap_targets);
    f->targets[f->ntargets++] = a;
    if (count)
        (*count)++;
    return PK_OK;
}

static pk_status pin(ctx *c, uint64_t lo, uint64_t hi)
{
    pk_flow *f = c->flow;
    RESERVE(c, f->pinned, f->npinned, c->cap_pinned);
    f->pinned[f->npinned++] = (pk_range){ lo, hi };
    return PK_OK;
}

static pk_status anchor(ctx *c, uint64_t lo, uint64_t hi)
{
    pk_flow *f = c->flow;
    RESERVE(c, f->anchored, f->nanchored, c->cap_anchored);
    f->anchored[f->nanchored++] = (pk_range){ lo, hi };
    return PK_OK;
}

static pk_status look_up(ctx *c, uint64_t lo, uint64_t hi)
{
    pk_flow *f = c->flow;
    RESERVE(c, f->looked_up, f->nlooked_up, c->cap_looked_up);
    f->looked_up[f->nlooked_up++] = (pk_range){ lo, hi };
    return PK_OK;
}

/* Adds a (in code) to the resumes. */
static pk_status resume(ctx *c, uint64_t a)
{
    pk_flow *f = c->flow;
    RESERVE(c, f->resumes, f->nresumes, c->cap_resumes);
    f->resumes[f->nresumes++] = a;
    return PK_OK;
}

/* The length of the instruction at b (n bytes left) for what kernel
 * tables mostly name in 32- and 64-bit code: CALL/JMP rel32, Jcc rel32,
 * JMP/Jcc rel8, UD2, ENDBR; 0 for the others. Zydis takes ~100 ns an
 * instruction, and a vmlinux lists 300,000. */
static unsigned quick_length(const uint8_t *b, uint64_t n)
{
    if (n >= 5 && (b[0] == 0xe8 || b[0] == 0xe9))
        return 5;
    if (n >= 2 && (b[0] == 0xeb || (b[0] & 0xf0) == 0x70 || (b[0] == 0x0f && b[1] == 0x0b)))
        return 2;
    if (n >= 6 && b[0] == 0x0f && (b[1] & 0xf0) == 0x80)
        return 6;
    if (n >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && (b[3] | 1) == 0xfb)
        return 4;
    return 0;
}

/* The length of the instruction at a (in r), or 1 where nothing decodes:
 * the patcher moves whole instructions, so one byte holds it. *load tells
 * whether it is a MOV load from memory (8B /r). */
static uint64_t insn_length(ctx *c, const pk_region *r, uint64_t a, bool *load)
{
    uint64_t off = a - r->vaddr, len;
    ZydisDecoderContext zc;
    ZydisDecodedInstruction in;
    *load = false;
    if (r->bits != 16 && (len = quick_length(r->bytes + off, r->size - off)))
        return len;
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&c->dec[r->bits == 64 ? 2 : r->bits == 32],
                                                  &zc, r->bytes + off, r->size - off, &in)))
        return 1;
    *load = in.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT && in.opcode == 0x8b;
    return in.length;
}

/* ---- relocations ------------------------------------------------------------ */

enum { RV_ADDEND = 1, RV_SYMBOL = 2 };

/* What a relocation's value is made of, for the types whose value can be
 * a code address (psABI tables); 0 for the others. PC-relative ones are
 * left out: in code, decoding sees them; in data, S+A is off by the
 * entry's place in its table. */
static unsigned reloc_value(unsigned machine, unsigned type)
{
    if (machine == EM_X86_64) {
        switch (type) {
        case R_X86_64_RELATIVE: case R_X86_64_IRELATIVE: return RV_ADDEND;
        case R_X86_64_64: case R_X86_64_32: case R_X86_64_32S: return RV_SYMBOL | RV_ADDEND;
        case R_X86_64_GLOB_DAT: case R_X86_64_JUMP_SLOT: return RV_SYMBOL;
        }
    } else {
        switch (type) {
        case R_386_RELATIVE: case R_386_IRELATIVE: return RV_ADDEND;
        case R_386_32: return RV_SYMBOL | RV_ADDEND;
        case R_386_GLOB_DAT: case R_386_JMP_SLOT: return RV_SYMBOL;
        }
    }
    return 0;
}

/* One SHT_REL or SHT_RELA section. A REL addend is read at the place: in
 * a relocatable object, inside the section sh_info names. Relocations of
 * a section that is not loaded (.rela.debug_info, kept by --emit-relocs)
 * name no control flow. */
static pk_status read_relocs(ctx *c, const GElf_Shdr *sh, const uint8_t *b)
{
    Elf *elf = c->img->elf;
    bool rela = sh->sh_type == SHT_RELA, is64 = c->ptr == 8;
    unsigned es = (is64 ? 16 : 8) + (rela ? c->ptr : 0), symes = is64 ? 24 : 16;
    GElf_Shdr symsh, placesh;
    const uint8_t *syms = NULL, *places = NULL;
    uint64_t nsyms = 0;
    if (sh->sh_info && (sh->sh_flags & SHF_INFO_LINK) &&
        gelf_getshdr(elf_getscn(elf, sh->sh_info), &placesh) &&
        !(placesh.sh_flags & SHF_ALLOC))
        return PK_OK;
    if (sh->sh_link && gelf_getshdr(elf_getscn(elf, sh->sh_link), &symsh) &&
        (symsh.sh_type == SHT_SYMTAB || symsh.sh_type == SHT_DYNSYM) &&
        (syms = section_bytes(c, &symsh)))
        nsyms = symsh.sh_size / symes;
    if (c->relocatable && gelf_getshdr(elf_getscn(elf, sh->sh_info), &placesh))
        places = section_bytes(c, &placesh);
    for (uint64_t off = 0; off + es <= sh->sh_size; off += es) {
        const uint8_t *e = b + off;
        uint64_t place = rd(e, c->ptr), info = rd(e + c->ptr, c->ptr);
        unsigned type = is64 ? (uint32_t)info : info & 0xff;
        uint64_t sym = is64 ? info >> 32 : info >> 8, v = 0;
        unsigned what = reloc_value(c->machine, type);
        if (!what)
            continue;
        if ((what & RV_ADDEND) && rela) {
            v = is64 ? rd(e + 16, 8) : (uint64_t)rd_s32(e + 8);
        } else if (what & RV_ADDEND) {
            const uint8_t *p = !c->relocatable ? bytes_at(c, place, c->ptr)
                             : places && place < placesh.sh_size && placesh.sh_size - place >= c->ptr
                                 ? places + place : NULL;
            if (!p)
                continue;
            v = rd(p, c->ptr);
        }
        if ((what & RV_SYMBOL) && sym) {
            if (sym >= nsyms)
                continue;
            const uint8_t *s = syms + sym * symes;
            if (rd(s + (is64 ? 6 : 14), 2) == SHN_UNDEF)
                continue; /* defined in another file */
            v += rd(s + (is64 ? 8 : 4), c->ptr);
        }
        PK_CHECK(target(c, is64 ? v : (uint32_t)v, &c->flow->from.relocations));
    }
    return PK_OK;
}

/* SHT_RELR: relative relocations as a list of places, each holding its
 * addend: an even entry is a place, an odd one a bitmap of the places
 * after the last. */
static pk_status read_relr(ctx *c, const uint8_t *b, uint64_t size)
{
    unsigned w = c->ptr;
    uint64_t next = 0;
    for (uint64_t off = 0; off + w <= size; off += w) {
        uint64_t e = rd(b + off, w);
        unsigned bits = e & 1 ? 8 * w - 1 : 1;
        uint64_t base = e & 1 ? next : e;
        for (unsigned i = 0; i < bits; i++) {
            const uint8_t *p;
            if ((!(e & 1) || (e >> (i + 1) & 1)) && (p = bytes_at(c, base + (uint64_t)i * w, w)))
                PK_CHECK(target(c, rd(p, w), &c->flow->from.relocations));
        }
        next = base + (uint64_t)bits * w;
    }
    return PK_OK;
}

static pk_status read_relocations(ctx *c)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(c->img->elf, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) ||
            (sh.sh_type != SHT_RELA && sh.sh_type != SHT_REL && sh.sh_type != SHT_RELR) ||
            !sh.sh_size)
            continue;
        const uint8_t *b = section_bytes(c, &sh);
        if (!b)
            return pk_fail(c->err, PK_ERR_FORMAT, "%s lies past the end of the file",
                           section_name(c, &sh));
        PK_CHECK(sh.sh_type == SHT_RELR ? read_relr(c, b, sh.sh_size)
                                        : read_relocs(c, &sh, b));
    }
    return PK_OK;
}

/* ---- data pointers ---------------------------------------------------------- */

/* The words of w bytes (inlined with a constant: the loop is the hot one
 * in a vmlinux) of s at aligned addresses. */
static inline pk_status read_words(ctx *c, const span *s, unsigned w)
{
    uint64_t a = (s->lo + w - 1) & ~(uint64_t)(w - 1);
    if (a < s->lo || a > s->hi)
        return PK_OK;
    const uint8_t *p = s->bytes + (a - s->lo);
    for (uint64_t n = (s->hi - a) / w; n--; p += w) {
        uint64_t v = rd(p, w);
        if (v - c->code_lo <= c->code_last)
            PK_CHECK(target(c, v, &c->flow->from.data_pointers));
    }
    return PK_OK;
}

static pk_status read_data_pointers(ctx *c)
{
    for (size_t i = 0; i < c->nspans; i++)
        PK_CHECK(c->ptr == 8 ? read_words(c, &c->spans[i], 8) : read_words(c, &c->spans[i], 4));
    return PK_OK;
}

/* ---- .eh_frame and .gcc_except_table ---------------------------------------- */

/* Reads bytes of a section at a known address; ok turns false for good
 * once a read runs past end or meets an encoding it cannot apply. */
typedef struct cursor {
    const uint8_t *p, *end;
    uint64_t addr;              /* of *p */
    bool ok;
} cursor;

static uint64_t get(cursor *k, unsigned n)
{
    if ((size_t)(k->end - k->p) < n) {
        k->ok = false;
        k->p = k->end;
        return 0;
    }
    uint64_t v = rd(k->p, n);
    k->p += n;
    k->addr += n;
    return v;
}

static uint64_t get_leb(cursor *k, bool is_signed)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
        if (k->p == k->end) {
            k->ok = false;
            return 0;
        }
        b = *k->p++;
        k->addr++;
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    } while (b & 0x80);
    if (is_signed && shift < 64 && (b & 0x40))
        v |= UINT64_MAX << shift;
    return v;
}

enum { PE_PCREL = 0x10, PE_DATAREL = 0x30, PE_INDIRECT = 0x80, PE_OMIT = 0xff };

/* A DW_EH_PE-encoded value. As in libgcc (unwind-pe.h), a stored zero
 * stays zero: no base is added, nothing is dereferenced. */
static uint64_t get_encoded(const ctx *c, cursor *k, uint8_t enc)
{
    uint64_t at = k->addr, v;
    switch (enc & 0x0f) {
    case 0x00: v = get(k, c->ptr); break;                           /* absptr */
    case 0x01: v = get_leb(k, false); break;                        /* uleb128 */
    case 0x02: v = get(k, 2); break;                                /* udata2 */
    case 0x03: v = get(k, 4); break;                                /* udata4 */
    case 0x04: case 0x0c: v = get(k, 8); break;                     /* u/sdata8 */
    case 0x09: v = get_leb(k, true); break;                         /* sleb128 */
    case 0x0a: v = (uint64_t)(int64_t)(int16_t)get(k, 2); break;    /* sdata2 */
    case 0x0b: v = (uint64_t)(int64_t)(int32_t)get(k, 4); break;    /* sdata4 */
    default: k->ok = false; return 0;
    }
    if (!v)
        return 0;
    switch (enc & 0x70) {
    case 0: break;
    case PE_PCREL: v += at; break;
    case PE_DATAREL: /* i386: from the GOT */
        if (!c->got)
            k->ok = false;
        v += c->got;
        break;
    default: k->ok = false; /* textrel, funcrel, aligned: not used on x86 */
    }
    if (c->ptr == 4)
        v = (uint32_t)v;
    if (enc & PE_INDIRECT) {
        const uint8_t *p = bytes_at(c, v, c->ptr);
        if (!p)
            k->ok = false;
        v = p ? rd(p, c->ptr) : 0;
    }
    return v;
}

typedef struct cie {
    uint64_t off;               /* of its length field in .eh_frame */
    uint8_t fde_enc, lsda_enc;
    bool augmented;             /* 'z': FDEs carry augmentation data */
} cie;

/* A CIE after its id; *ok false when it cannot be read. A personality
 * routine named directly is a target (named indirectly, the pointer is a
 * data pointer). */
static pk_status read_cie(ctx *c, cursor *k, cie *ci, bool *ok)
{
    uint8_t version = (uint8_t)get(k, 1);
    const char *aug = (const char *)k->p;
    size_t n = strnlen(aug, (size_t)(k->end - k->p));
    *ok = false;
    if (n == (size_t)(k->end - k->p) || (version != 1 && version != 3 && version != 4) ||
        (aug[0] && aug[0] != 'z'))
        return PK_OK; /* without 'z' the FDEs' layout is unknown */
    k->p += n + 1;
    k->addr += n + 1;
    if (version == 4)
        get(k, 2);                              /* address and segment selector sizes */
    get_leb(k, false);                          /* code alignment */
    get_leb(k, true);                           /* data alignment */
    version == 1 ? get(k, 1) : get_leb(k, false); /* return address register */
    *ci = (cie){ .off = ci->off, .lsda_enc = PE_OMIT, .augmented = aug[0] == 'z' };
    if (!ci->augmented) {
        *ok = k->ok;
        return PK_OK;
    }
    uint64_t len = get_leb(k, false);
    if (!k->ok || len > (uint64_t)(k->end - k->p))
        return PK_OK;
    cursor a = { k->p, k->p + len, k->addr, true };
    for (const char *x = aug + 1; *x && a.ok && strchr("LRPSBG", *x); x++) {
        if (*x == 'L') {
            ci->lsda_enc = (uint8_t)get(&a, 1);
        } else if (*x == 'R') {
            ci->fde_enc = (uint8_t)get(&a, 1);
        } else if (*x == 'P') {
            uint8_t enc = (uint8_t)get(&a, 1);
            uint64_t routine = get_encoded(c, &a, enc & ~PE_INDIRECT);
            if (a.ok && !(enc & PE_INDIRECT))
                PK_CHECK(target(c, routine, &c->flow->from.landing_pads));
        }
    }
    *ok = a.ok; /* past the letters it knows, 'z' says where the data ends */
    return PK_OK;
}

/* Adds the landing pads of the LSDA at addr, for the function at func;
 * *ok false, adding nothing, when it cannot be read. */
static pk_status read_lsda(ctx *c, uint64_t addr, uint64_t func, bool *ok)
{
    const span *s = span_at(c, addr);
    *ok = false;
    if (!s)
        return PK_OK;
    cursor k = { s->bytes + (addr - s->lo), s->bytes + (s->hi - s->lo), addr, true };
    size_t before = c->flow->ntargets, count = 0;
    uint8_t enc = (uint8_t)get(&k, 1);
    uint64_t lpstart = enc == PE_OMIT ? func : get_encoded(c, &k, enc);
    if (get(&k, 1) != PE_OMIT)
        get_leb(&k, false);                     /* TType: the offset of the type table */
    uint8_t cs = (uint8_t)get(&k, 1);
    uint64_t len = get_leb(&k, false);
    if (!k.ok || len > (uint64_t)(k.end - k.p))
        return PK_OK;
    k.end = k.p + len;
    while (k.ok && k.p < k.end) {
        get_encoded(c, &k, cs);                 /* start */
        get_encoded(c, &k, cs);                 /* length */
        uint64_t lp = get_encoded(c, &k, cs);
        get_leb(&k, false);                     /* action */
        if (k.ok && lp)
            PK_CHECK(target(c, c->ptr == 4 ? (uint32_t)(lpstart + lp) : lpstart + lp, &count));
    }
    if (!k.ok) {
        c->flow->ntargets = before;
        return PK_OK;
    }
    c->flow->from.landing_pads += count;
    *ok = true;
    return PK_OK;
}

/* An FDE after its CIE pointer: its range is a function, its LSDA names
 * landing pads; an unreadable LSDA pins the whole function. *ok false
 * when the FDE itself cannot be read. */
static pk_status read_fde(ctx *c, cursor *k, const cie *ci, bool *ok)
{
    uint64_t lo = get_encoded(c, k, ci->fde_enc);
    uint64_t len = get_encoded(c, k, ci->fde_enc & 0x0f);
    uint64_t lsda = 0;
    bool lsda_ok = true;
    if (ci->augmented) {
        uint64_t n = get_leb(k, false);
        if (n > (uint64_t)(k->end - k->p))
            k->ok = false;
        cursor a = { k->p, k->p + (k->ok ? n : 0), k->addr, true };
        if (k->ok && ci->lsda_enc != PE_OMIT) {
            lsda = get_encoded(c, &a, ci->lsda_enc);
            lsda_ok = a.ok;
        }
    }
    *ok = k->ok && lo + len >= lo;
    if (!*ok || !len || !code_at(c, lo))
        return PK_OK; /* out of code: a discarded function's FDE */
    RESERVE(c, c->fdes, c->nfdes, c->cap_fdes);
    c->fdes[c->nfdes++] = (pk_range){ lo, lo + len };
    PK_CHECK(target(c, lo, &c->flow->from.symbols)); /* a function, maybe called through a pointer */
    if (lsda_ok && lsda)
        PK_CHECK(read_lsda(c, lsda, lo, &lsda_ok));
    return lsda_ok ? PK_OK : pin(c, lo, lo + len);
}

static pk_status eh_frame_error(ctx *c, uint64_t off, const char *what)
{
    return pk_fail(c->err, PK_ERR_FORMAT, ".eh_frame: entry at offset 0x%llx: %s",
                   (unsigned long long)off, what);
}

static pk_status read_eh_frame(ctx *c)
{
    GElf_Shdr sh;
    const uint8_t *b = find_section(c, ".eh_frame", &sh);
    if (!b)
        return PK_OK;
    cie *cies = NULL;
    size_t ncies = 0, cap = 0;
    pk_status s = PK_OK;
    uint64_t size = sh.sh_size;
    for (uint64_t off = 0, next; s == PK_OK && size - off >= 4; off = next) {
        uint64_t hdr = 4, len = rd(b + off, 4);
        if (!len)
            break; /* the terminator: libgcc reads no further either */
        if (len == 0xffffffff) {
            hdr = 12;
            len = size - off >= hdr ? rd(b + off + 4, 8) : 0;
        }
        if (size - off < hdr || len < 4 || len > size - off - hdr) {
            s = eh_frame_error(c, off, "runs past the end of the section");
            break;
        }
        next = off + hdr + len;
        cursor k = { b + off + hdr, b + next, sh.sh_addr + off + hdr, true };
        uint64_t id = get(&k, 4);
        bool ok;
        if (!id) {
            if (ncies == cap) {
                cie *more = realloc(cies, (cap = cap ? cap * 2 : 64) * sizeof *cies);
                if (!more) {
                    s = pk_fail(c->err, PK_ERR_NOMEM, "out of memory");
                    break;
                }
                cies = more;
            }
            cies[ncies].off = off;
            s = read_cie(c, &k, &cies[ncies++], &ok);
            if (s == PK_OK && !ok)
                s = eh_frame_error(c, off, "a CIE it cannot read");
            continue;
        }
        /* The CIE pointer counts back from itself: CIEs come first, in
         * order of offset. */
        uint64_t want = off + hdr - id;
        size_t lo = 0, hi = ncies;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cies[mid].off < want)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (id > off + hdr || lo == ncies || cies[lo].off != want) {
            s = eh_frame_error(c, off, "its CIE pointer names no CIE");
            break;
        }
        s = read_fde(c, &k, &cies[lo], &ok);
        if (s == PK_OK && !ok)
            s = eh_frame_error(c, off, "an FDE it cannot read");
    }
    free(cies);
    return s;
}

/* ---- Linux kernel tables ----------------------------------------------------- */

/* What an s32 field names, relative to the field's own address. */
enum {
    K_PIN_INSN = 1,             /* an instruction the kernel rewrites */
    K_PIN5 = 2,                 /* code the kernel rewrites with up to 5 bytes */
    K_PIN_LABEL = 128,          /* a jump label: 2 bytes when it is so short, else 5 */
    K_TARGET = 4,               /* where control goes */
    K_AFTER = 8,                /* control resumes after the instruction */
    K_ANCHOR = 16,              /* an instruction the kernel finds by its address and reads */
    K_LOOKED_UP = 32,           /* an instruction the kernel finds by its address (below) */
    K_RESUME = 64,              /* where the kernel resumes after a lookup (flow.h resumes) */
};

/* A linked vmlinux keeps most tables as sections of their own;
 * __jump_table and .static_call_sites sit in .rodata between __start_ and
 * __stop_ symbols. Entry sizes are those known, tried in order; a layout
 * fits when every field it names lands in code. */
static const struct ktable {
    const char *section, *start, *stop;
    uint8_t sizes[4];           /* 0-terminated */
    uint8_t field[2];           /* K_* of the s32 at 0 and at 4 */
} ktables[] = {
    /* insn (the kernel finds the fixup by the faulting address), fixup
     * (where it resumes, through IRET), then data (6.x) or handler (4.6 to
     * 5.15); 8 bytes before 4.6. The handlers (arch/x86/mm/extable.c) read
     * registers, the stack and the entry, not the code, but for
     * EX_TYPE_ZEROPAD's: it decodes the faulting instruction, a MOV load
     * (8B /r) whose fixup is the next instruction. Such an entry anchors
     * its instruction (its type's number varies between versions: the
     * shape decides). */
    { "__ex_table", "__start___ex_table", "__stop___ex_table", { 12, 8 },
      { K_LOOKED_UP, K_RESUME } },
    /* code (a jmp or a nop of 2 or 5 bytes), target, long key. Since 5.13
     * the kernel writes as many bytes as the instruction there has
     * (arch_jump_entry_size decodes it: JMP rel8 or the 2-byte NOP 66 90,
     * else 5); before, always 5, and no such instruction began one. */
    { "__jump_table", "__start___jump_table", "__stop___jump_table", { 16, 12 },
      { K_PIN_LABEL, K_TARGET } },
    /* a call or jmp rel32, key (whose low bits are flags) */
    { ".static_call_sites", "__start_static_call_sites", "__stop_static_call_sites", { 8 },
      { K_PIN5, 0 } },
    /* branches to thunks, calls, LOCK prefixes (toggled with DS) and
     * ENDBRs the kernel rewrites at boot; an indirect branch may land at
     * an ENDBR */
    { ".retpoline_sites", NULL, NULL, { 4 }, { K_PIN_INSN, 0 } },
    { ".return_sites", NULL, NULL, { 4 }, { K_PIN_INSN, 0 } },
    { ".call_sites", NULL, NULL, { 4 }, { K_PIN_INSN, 0 } },
    { ".smp_locks", NULL, NULL, { 4 }, { K_PIN_INSN, 0 } },
    { ".ibt_endbr_seal", NULL, NULL, { 4 }, { K_PIN_INSN | K_TARGET, 0 } },
    /* bug_addr (a UD2 found by address; a WARN resumes after it), then
     * file, line, flags: 12 bytes in 6.x, 8 without the file and line,
     * 16 with a format. handle_bug reads the UD2 at the faulting address
     * (decode_bug, is_valid_bugaddr): it never moves, so where a WARN
     * resumes is never inside a jump's bytes either. */
    { "__bug_table", "__start___bug_table", "__stop___bug_table", { 12, 16, 8 },
      { K_ANCHOR | K_AFTER, 0 } },
};
enum { NKTABLES = sizeof ktables / sizeof ktables[0] };

static uint64_t field_at(uint64_t addr, const uint8_t *b, uint64_t off)
{
    return addr + off + (uint64_t)rd_s32(b + off);
}

/* An entry of zeros is padding: .smp_locks is padded to a page, and the
 * kernel skips such entries. */
static bool padding(const uint8_t *e, unsigned es)
{
    while (es && !e[es - 1])
        es--;
    return !es;
}

/* Reads the table in the layout of entries of es bytes; *fits false,
 * adding nothing, when some field it names lands outside code. */
static pk_status read_ktable_as(ctx *c, const struct ktable *t, uint64_t addr, const uint8_t *b,
                                uint64_t size, unsigned es, bool *fits)
{
    pk_flow *f = c->flow;
    size_t ntargets = f->ntargets, nresumes = f->nresumes, npinned = f->npinned;
    size_t nanchored = f->nanchored, nlooked_up = f->nlooked_up;
    size_t entries = f->from.kernel_tables;
    *fits = !(size % es);
    for (uint64_t off = 0; *fits && off < size; off += es) {
        /* Reading the code each entry names misses the cache (a vmlinux
         * names 300,000 places): ask for it 16 entries ahead. */
        if (c->last && off + 16 * es < size) {
            uint64_t ahead = field_at(addr, b, off + 16 * es) - c->last->vaddr;
            if (ahead < c->last->size)
                __builtin_prefetch(c->last->bytes + ahead);
        }
        if (padding(b + off, es))
            continue;
        for (unsigned i = 0; i < 2 && *fits; i++) {
            if (!t->field[i])
                continue;
            uint64_t a = field_at(addr, b, off + 4 * i), len = 1;
            const pk_region *r = code_at(c, a);
            bool load = false;
            if (!(*fits = r != NULL))
                break;
            if (t->field[i] & (K_PIN_INSN | K_ANCHOR | K_LOOKED_UP))
                len = insn_length(c, r, a, &load);
            if (t->field[i] & K_PIN_INSN)
                PK_CHECK(pin(c, a, a + len));
            if ((t->field[i] & K_ANCHOR) ||
                ((t->field[i] & K_LOOKED_UP) && load && (t->field[1] & K_RESUME) &&
                 field_at(addr, b, off + 4) == a + len))
                PK_CHECK(anchor(c, a, a + len)); /* maybe EX_TYPE_ZEROPAD's */
            else if (t->field[i] & K_LOOKED_UP)
                PK_CHECK(look_up(c, a, a + len));
            if (t->field[i] & K_RESUME)
                PK_CHECK(resume(c, a));
            if (t->field[i] & (K_PIN5 | K_PIN_LABEL)) {
                const uint8_t *p = r->bytes + (a - r->vaddr);
                uint64_t left = r->vaddr + r->size - a, n = 5;
                if ((t->field[i] & K_PIN_LABEL) && left >= 2 &&
                    (p[0] == 0xeb || (p[0] == 0x66 && p[1] == 0x90)))
                    n = 2;
                PK_CHECK(pin(c, a, a + (left < n ? left : n)));
            }
            if (t->field[i] & K_TARGET)
                PK_CHECK(target(c, a, NULL));
            if (t->field[i] & K_AFTER)
                PK_CHECK(target(c, a + len, NULL));
        }
        f->from.kernel_tables++;
    }
    if (!*fits) {
        f->ntargets = ntargets;
        f->nresumes = nresumes;
        f->npinned = npinned;
        f->nanchored = nanchored;
        f->nlooked_up = nlooked_up;
        f->from.kernel_tables = entries;
    }
    return PK_OK;
}

static pk_status read_ktable(ctx *c, const struct ktable *t, uint64_t addr, const uint8_t *b,
                             uint64_t size)
{
    bool fits = false;
    for (unsigned i = 0; t->sizes[i] && !fits; i++)
        PK_CHECK(read_ktable_as(c, t, addr, b, size, t->sizes[i], &fits));
    if (!fits)
        return pk_fail(c->err, PK_ERR_FORMAT,
                       "%s: no known layout fits its %llu bytes (entries of %u bytes or "
                       "pointing outside code)", t->section, (unsigned long long)size,
                       t->sizes[0]);
    return PK_OK;
}

/* Tables of absolute code addresses (ELF64 kernels), between symbols:
 * ftrace's call sites (__mcount_loc: a 5-byte NOP it turns into a call at
 * run time), and before 6.8, paravirt call sites rewritten at boot
 * (.parainstructions: {u8 *instr; u8 type; u8 len;}, 16 bytes). */
static pk_status read_pointer_tables(ctx *c)
{
    static const struct {
        const char *start, *stop;
        unsigned entry_size;
        int len_at;             /* offset of the u8 length, or -1: 5 bytes */
    } tables[] = {
        { "__start_mcount_loc", "__stop_mcount_loc", 8, -1 },
        { "__parainstructions", "__parainstructions_end", 16, 9 },
    };
    enum { N = sizeof tables / sizeof tables[0] };
    uint64_t start[N] = { 0 }, stop[N] = { 0 };
    for (size_t i = 0; i < c->img->nsymbols; i++)
        for (unsigned t = 0; t < N; t++) {
            if (!strcmp(c->img->symbols[i].name, tables[t].start))
                start[t] = c->img->symbols[i].addr;
            if (!strcmp(c->img->symbols[i].name, tables[t].stop))
                stop[t] = c->img->symbols[i].addr;
        }
    for (unsigned t = 0; t < N; t++) {
        uint64_t size = stop[t] - start[t];
        const uint8_t *b;
        if (!start[t] || stop[t] <= start[t] || size % tables[t].entry_size)
            continue;
        if (!(b = bytes_at(c, start[t], size)))
            return pk_fail(c->err, PK_ERR_FORMAT, "%s: its symbols name no bytes",
                           tables[t].start);
        for (uint64_t off = 0; off < size; off += tables[t].entry_size) {
            uint64_t a = rd(b + off, 8);
            const pk_region *r = code_at(c, a);
            if (!r)
                continue; /* code freed after boot, or an empty entry */
            uint64_t len = tables[t].len_at < 0 ? 5 : b[off + (unsigned)tables[t].len_at];
            uint64_t end = r->vaddr + r->size - a < len ? r->vaddr + r->size : a + len;
            PK_CHECK(pin(c, a, end));
            c->flow->from.kernel_tables++;
        }
    }
    return PK_OK;
}

/* The tables by section, else between their symbols (in an unstripped
 * vmlinux; System.map's data symbols are not loaded). */
static pk_status read_ktables(ctx *c)
{
    uint64_t start[NKTABLES] = { 0 }, stop[NKTABLES] = { 0 };
    const uint8_t *found[NKTABLES];
    GElf_Shdr sh[NKTABLES];
    bool want_symbols = false;
    for (unsigned t = 0; t < NKTABLES; t++) {
        found[t] = find_section(c, ktables[t].section, &sh[t]);
        want_symbols |= !found[t] && ktables[t].start;
    }
    for (size_t i = 0; want_symbols && i < c->img->nsymbols; i++) {
        const pk_symbol *s = &c->img->symbols[i];
        if (strncmp(s->name, "__st", 4))
            continue;
        for (unsigned t = 0; t < NKTABLES; t++) {
            if (ktables[t].start && !strcmp(s->name, ktables[t].start))
                start[t] = s->addr;
            if (ktables[t].stop && !strcmp(s->name, ktables[t].stop))
                stop[t] = s->addr;
        }
    }
    for (unsigned t = 0; t < NKTABLES; t++) {
        if (found[t]) {
            PK_CHECK(read_ktable(c, &ktables[t], sh[t].sh_addr, found[t], sh[t].sh_size));
        } else if (start[t] && stop[t] > start[t]) {
            const uint8_t *b = bytes_at(c, start[t], stop[t] - start[t]);
            if (!b)
                return pk_fail(c->err, PK_ERR_FORMAT, "%s: its symbols name no bytes",
                               ktables[t].section);
            PK_CHECK(read_ktable(c, &ktables[t], start[t], b, stop[t] - start[t]));
        }
    }
    for (size_t i = 0; i < c->img->nalts; i++) {
        const pk_alt *a = &c->img->alts[i];
        PK_CHECK(pin(c, a->instr, a->instr + a->instr_len));
        c->flow->from.kernel_tables++;
    }
    return read_pointer_tables(c);
}

/* ---- functions ---------------------------------------------------------------- */

/* Adds to flow->functions the ranges of layer (sorted, disjoint) that
 * overlap none already there. */
static pk_status add_layer(ctx *c, const pk_range *layer, size_t n)
{
    pk_flow *f = c->flow;
    size_t have = f->nfunctions;
    for (size_t i = 0; i < n; i++) {
        if (overlaps(f->functions, have, layer[i].lo, layer[i].hi))
            continue;
        RESERVE(c, f->functions, f->nfunctions, c->cap_functions);
        f->functions[f->nfunctions++] = layer[i];
    }
    return sort_by_key(c, f->functions, f->nfunctions, sizeof *f->functions);
}

/* FDEs, then sized function symbols, then unsized ones up to the next
 * symbol of their region (or its end). */
static pk_status find_functions(ctx *c)
{
    const pk_image *img = c->img;
    PK_CHECK(merge_ranges(c, c->fdes, &c->nfdes, false));
    PK_CHECK(add_layer(c, c->fdes, c->nfdes));

    pk_range *layer = malloc((img->nsymbols + 1) * sizeof *layer);
    size_t *open = calloc(img->nregions, sizeof *open); /* unsized symbol index + 1 */
    pk_status s = PK_OK;
    if (!layer || !open) {
        s = pk_fail(c->err, PK_ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < img->nsymbols; i++) {
        const pk_symbol *sym = &img->symbols[i];
        if (sym->func && sym->size && sym->region >= 0 && sym->addr + sym->size > sym->addr)
            layer[n++] = (pk_range){ sym->addr, sym->addr + sym->size };
    }
    if ((s = merge_ranges(c, layer, &n, false)) != PK_OK ||
        (s = add_layer(c, layer, n)) != PK_OK)
        goto out;

    n = 0;
    for (size_t i = 0; i < img->nsymbols; i++) {
        const pk_symbol *sym = &img->symbols[i];
        if (sym->region < 0)
            continue;
        size_t *o = &open[sym->region];
        if (*o && img->symbols[*o - 1].addr < sym->addr) {
            layer[n++] = (pk_range){ img->symbols[*o - 1].addr, sym->addr };
            *o = 0;
        }
        if (sym->func && !sym->size)
            *o = i + 1;
    }
    for (size_t r = 0; r < img->nregions; r++)
        if (open[r])
            layer[n++] = (pk_range){ img->symbols[open[r] - 1].addr,
                                     img->regions[r].vaddr + img->regions[r].size };
    if ((s = sort_by_key(c, layer, n, sizeof *layer)) == PK_OK)
        s = add_layer(c, layer, n);
out:
    free(layer);
    free(open);
    return s;
}

/* ---- building ------------------------------------------------------------------ */

static pk_status read_elf(ctx *c)
{
    Elf *elf = c->img->elf;
    GElf_Ehdr eh;
    size_t shnum = 0;
    if (!gelf_getehdr(elf, &eh) || elf_getshdrnum(elf, &shnum) != 0 ||
        (shnum && elf_getshdrstrndx(elf, &c->shstrndx) != 0))
        return pk_fail(c->err, PK_ERR_FORMAT, "corrupt ELF header");
    c->machine = eh.e_machine;
    c->ptr = gelf_getclass(elf) == ELFCLASS64 ? 8 : 4;
    c->relocatable = eh.e_type == ET_REL;
    PK_CHECK(load_spans(c, shnum));
    GElf_Shdr sh;
    if (find_section(c, ".got.plt", &sh) || find_section(c, ".got", &sh))
        c->got = sh.sh_addr;
    PK_CHECK(read_relocations(c));
    PK_CHECK(read_data_pointers(c));
    if (c->relocatable)
        return PK_OK;
    PK_CHECK(read_eh_frame(c));
    return read_ktables(c);
}

/* Sorts a[0, *n) and drops duplicates. */
static pk_status sort_unique(ctx *c, uint64_t *a, size_t *n)
{
    PK_CHECK(sort_by_key(c, a, *n, sizeof *a));
    size_t out = 0;
    for (size_t i = 0; i < *n; i++)
        if (!out || a[i] != a[out - 1])
            a[out++] = a[i];
    *n = out;
    return PK_OK;
}

static pk_status build(ctx *c)
{
    const pk_image *img = c->img;
    pk_flow *f = c->flow;
    c->code_lo = img->regions[0].vaddr;
    for (size_t i = 0; i < img->nregions; i++) {
        uint64_t last = img->regions[i].vaddr - c->code_lo + (img->regions[i].size - 1);
        if (last > c->code_last)
            c->code_last = last; /* not the end: a region may end at 2^64 */
    }
    static const unsigned bits[3] = { 16, 32, 64 };
    for (unsigned i = 0; i < 3; i++)
        if (!pk_decoder_init(&c->dec[i], bits[i], true))
            return pk_fail(c->err, PK_ERR_INTERNAL, "Zydis refused a %u-bit decoder", bits[i]);

    for (size_t i = 0; i < img->nsymbols; i++)
        if (img->symbols[i].region >= 0)
            PK_CHECK(target(c, img->symbols[i].addr, &f->from.symbols));
    if (img->has_entry)
        PK_CHECK(target(c, img->entry, &f->from.symbols));
    if (img->elf)
        PK_CHECK(read_elf(c));
    PK_CHECK(find_functions(c));

    PK_CHECK(sort_unique(c, f->targets, &f->ntargets));
    PK_CHECK(sort_unique(c, f->resumes, &f->nresumes));
    PK_CHECK(merge_ranges(c, f->anchored, &f->nanchored, true));
    PK_CHECK(merge_ranges(c, f->looked_up, &f->nlooked_up, true));
    return merge_ranges(c, f->pinned, &f->npinned, true);
}

pk_status pk_flow_build(const pk_image *img, pk_flow *flow, pk_error *err)
{
    if (!flow)
        return pk_fail(err, PK_ERR_USAGE, "no flow to fill");
    memset(flow, 0, sizeof *flow);
    if (!img || !img->nregions)
        return pk_fail(err, PK_ERR_USAGE, "no image, or an image without code");
    ctx c = { .img = img, .flow = flow, .err = err };
    pk_status s = build(&c);
    free(c.spans);
    free(c.fdes);
    if (s != PK_OK)
        pk_flow_free(flow);
    return s;
}

void pk_flow_free(pk_flow *flow)
{
    free(flow->targets);
    free(flow->resumes);
    free(flow->pinned);
    free(flow->anchored);
    free(flow->looked_up);
    free(flow->functions);
    memset(flow, 0, sizeof *flow);
}

/* ---- queries --------------------------------------------------------------------- */

bool pk_flow_has_target(const pk_flow *flow, uint64_t lo, uint64_t hi)
{
    return pk_any_in(flow->targets, flow->ntargets, lo, hi);
}

bool pk_flow_is_pinned(const pk_flow *flow, uint64_t lo, uint64_t hi)
{
    return overlaps(flow->pinned, flow->npinned, lo, hi);
}

bool pk_flow_has_resume(const pk_flow *flow, uint64_t lo, uint64_t hi)
{
    return pk_any_in(flow->resumes, flow->nresumes, lo, hi);
}

bool pk_flow_is_anchored(const pk_flow *flow, uint64_t lo, uint64_t hi)
{
    return overlaps(flow->anchored, flow->nanchored, lo, hi);
}

bool pk_flow_is_looked_up(const pk_flow *flow, uint64_t lo, uint64_t hi)
{
    return overlaps(flow->looked_up, flow->nlooked_up, lo, hi);
}

bool pk_flow_function_at(const pk_flow *flow, uint64_t addr, pk_range *fn)
{
    size_t i = first_ending_above(flow->functions, flow->nfunctions, addr);
    if (i == flow->nfunctions || flow->functions[i].lo > addr)
        return false;
    if (fn)
        *fn = flow->functions[i];
    return true;
}
