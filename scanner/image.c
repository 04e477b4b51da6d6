/* popek — loading images: ELF files (libelf), bzImage payloads, raw blobs,
 * the running kernel's vDSO, symbols and Linux alternatives tables. */
#include "popek/image.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "popek/bzimage.h"
#include "popek/elfgrow.h"

/* ---- small helpers -------------------------------------------------------- */

static pk_status read_whole_file(const char *path, uint8_t **out, size_t *len,
                                 pk_error *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pk_fail(err, PK_ERR_IO, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pk_fail(err, PK_ERR_IO, "%s", strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return pk_fail(err, PK_ERR_IO, "is a directory");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pk_fail(err, PK_ERR_IO, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return pk_fail(err, PK_ERR_NOMEM, "out of memory reading %zu bytes", size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return pk_fail(err, PK_ERR_IO, "read failed: %s", strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = size;
    return PK_OK;
}

static int compare_regions(const void *a, const void *b)
{
    const pk_region *x = a, *y = b;
    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

static int compare_symbols(const void *a, const void *b)
{
    const pk_symbol *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->func != y->func)
        return x->func ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_alts(const void *a, const void *b)
{
    const pk_alt *x = a, *y = b;
    if (x->repl != y->repl)
        return x->repl < y->repl ? -1 : 1;
    return x->instr < y->instr ? -1 : x->instr > y->instr;
}

static pk_status add_region(pk_image *img, const char *name, uint64_t vaddr,
                            uint64_t offset, const uint8_t *bytes,
                            uint64_t size, unsigned bits, uint32_t shndx, pk_error *err)
{
    pk_region *r = realloc(img->regions, (img->nregions + 1) * sizeof *r);
    if (!r)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    img->regions = r;
    char *copy = strdup(name);
    if (!copy)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    r[img->nregions++] = (pk_region){
        .name = copy, .vaddr = vaddr, .offset = offset, .size = size,
        .bytes = bytes, .bits = (uint8_t)bits, .shndx = shndx,
    };
    return PK_OK;
}

static pk_status add_symbol(pk_image *img, uint64_t addr, uint64_t size,
                            const char *name, bool func, int32_t region, size_t *cap,
                            pk_error *err)
{
    if (img->nsymbols == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        pk_symbol *s = realloc(img->symbols, ncap * sizeof *s);
        if (!s)
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
        img->symbols = s;
        *cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    img->symbols[img->nsymbols++] = (pk_symbol){
        .addr = addr, .size = size, .name = copy, .func = func, .region = region,
    };
    return PK_OK;
}

static int32_t region_index_at(const pk_image *img, uint64_t addr)
{
    const pk_region *r = pk_image_region_at(img, addr);
    return r ? (int32_t)(r - img->regions) : -1;
}

static int32_t region_index_of_section(const pk_image *img, size_t shndx)
{
    for (size_t i = 0; i < img->nregions; i++)
        if (img->regions[i].shndx == shndx)
            return (int32_t)i;
    return -1;
}

/* Sorts symbols and drops exact duplicates (.symtab and .dynsym overlap). */
static void finish_symbols(pk_image *img)
{
    if (!img->nsymbols)
        return;
    qsort(img->symbols, img->nsymbols, sizeof *img->symbols, compare_symbols);
    size_t out = 1;
    for (size_t i = 1; i < img->nsymbols; i++) {
        pk_symbol *prev = &img->symbols[out - 1], *s = &img->symbols[i];
        if (s->addr == prev->addr && !strcmp(s->name, prev->name)) {
            if (s->size > prev->size)
                prev->size = s->size;
            free(s->name);
            continue;
        }
        img->symbols[out++] = *s;
    }
    img->nsymbols = out;
}

/* ---- ELF ----------------------------------------------------------------- */

static const char *machine_name(unsigned machine)
{
    switch (machine) {
    case EM_AARCH64: return "aarch64";
    case EM_ARM: return "arm";
    case EM_RISCV: return "riscv";
    case EM_PPC: return "powerpc";
    case EM_PPC64: return "powerpc64";
    case EM_S390: return "s390";
    case EM_MIPS: return "mips";
    case EM_SPARCV9: return "sparc64";
    case EM_LOONGARCH: return "loongarch";
    default: return NULL;
    }
}

static const char *elf_type_name(unsigned type, bool pie)
{
    switch (type) {
    case ET_REL: return "relocatable object";
    case ET_EXEC: return "executable";
    case ET_DYN: return pie ? "PIE executable" : "shared object";
    case ET_CORE: return "core file";
    default: return "file";
    }
}

/* True when the section (of any type that occupies file bytes) lies inside
 * the file: libelf does not check this for images in memory. */
static bool section_in_file(const GElf_Shdr *sh, size_t len)
{
    return sh->sh_type == SHT_NOBITS ||
           (sh->sh_offset <= len && sh->sh_size <= len - sh->sh_offset);
}

/* Symbols of .symtab and .dynsym. In a relocatable object every section
 * starts at 0, so a symbol's region comes from its section, not its value. */
static pk_status load_elf_symbols(pk_image *img, Elf *elf, size_t len, bool relocatable,
                                  pk_error *err)
{
    size_t cap = 0;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        if (!section_in_file(&sh, len) || !sh.sh_entsize)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (!data)
            continue;
        size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < count; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym))
                break;
            int type = GELF_ST_TYPE(sym.st_info);
            if (type != STT_FUNC && type != STT_NOTYPE && type != STT_GNU_IFUNC &&
                type != STT_OBJECT)
                continue;
            if (sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS)
                continue;
            const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
            if (!name || !*name)
                continue;
            bool func = type == STT_FUNC || type == STT_GNU_IFUNC;
            int32_t region = relocatable ? region_index_of_section(img, sym.st_shndx)
                                         : region_index_at(img, sym.st_value);
            PK_CHECK(add_symbol(img, sym.st_value, sym.st_size, name, func, region, &cap,
                                err));
        }
    }
    finish_symbols(img);
    return PK_OK;
}

/* Linux's struct alt_instr has had three layouts (all packed, offsets
 * relative to the field): 4.x: s32 instr, s32 repl, u16 cpuid, u8 instrlen,
 * u8 replacementlen, u8 padlen (13 bytes); 5.x to 6.1: the same without
 * padlen (12); later: s32 instr, s32 repl, u32 ft_flags, u8 instrlen,
 * u8 replacementlen (14). The size of the section picks the candidates; every entry must then
 * point into code, and its replacement into .altinstr_replacement. */
static const struct alt_layout {
    unsigned size, instrlen_at, repllen_at;
} alt_layouts[] = { { 14, 12, 13 }, { 12, 10, 11 }, { 13, 10, 11 } };

static bool alt_entry_sane(const pk_image *img, uint64_t instr, unsigned ilen,
                           uint64_t repl, unsigned rlen, const GElf_Shdr *replsh)
{
    if (!ilen || rlen > ilen)
        return false;
    const pk_region *r = pk_image_region_at(img, instr);
    if (!r || instr + ilen > r->vaddr + r->size)
        return false;
    return !rlen || (repl >= replsh->sh_addr && repl + rlen <= replsh->sh_addr + replsh->sh_size);
}

static pk_status load_alternatives(pk_image *img, Elf *elf, size_t shstrndx,
                                   size_t len, pk_error *err)
{
    Elf_Scn *scn = NULL, *alt_scn = NULL;
    GElf_Shdr altsh = { 0 }, replsh = { 0 };
    bool have_repl = false;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            continue;
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (!name)
            continue;
        if (!strcmp(name, ".altinstructions") && section_in_file(&sh, len) &&
            sh.sh_type == SHT_PROGBITS) {
            alt_scn = scn;
            altsh = sh;
        } else if (!strcmp(name, ".altinstr_replacement")) {
            replsh = sh;
            have_repl = true;
        }
    }
    if (!alt_scn || !have_repl || !altsh.sh_size)
        return PK_OK;
    const uint8_t *base = img->data + altsh.sh_offset;

    for (size_t l = 0; l < sizeof alt_layouts / sizeof alt_layouts[0]; l++) {
        const struct alt_layout *lay = &alt_layouts[l];
        if (altsh.sh_size % lay->size)
            continue;
        size_t count = altsh.sh_size / lay->size;
        pk_alt *alts = malloc(count * sizeof *alts);
        if (!alts)
            return pk_fail(err, PK_ERR_NOMEM, "out of memory");
        size_t i;
        for (i = 0; i < count; i++) {
            const uint8_t *e = base + i * lay->size;
            int32_t ioff, roff;
            memcpy(&ioff, e, 4);
            memcpy(&roff, e + 4, 4);
            uint64_t at = altsh.sh_addr + i * lay->size;
            pk_alt a = {
                .instr = at + (int64_t)ioff,
                .repl = at + 4 + (int64_t)roff,
                .instr_len = e[lay->instrlen_at],
                .repl_len = e[lay->repllen_at],
            };
            if (!alt_entry_sane(img, a.instr, a.instr_len, a.repl, a.repl_len, &replsh))
                break;
            alts[i] = a;
        }
        if (i < count) {
            free(alts);
            continue;
        }
        qsort(alts, count, sizeof *alts, compare_alts);
        img->alts = alts;
        img->nalts = count;
        img->alt_entry_size = lay->size;
        return PK_OK;
    }
    return PK_OK; /* layout not recognised: report no alternatives */
}

/* Where restore_patched finds the code a patch table describes. */
struct patched_code {
    pk_image *img;
    const pk_region *wrong_bits; /* a region whose mode is not the table's */
};

/* A pk_code_at over the image's code regions: the bytes must lie in one
 * region, of the table's bitness. */
static uint8_t *patched_code_at(void *ctx, uint64_t addr, size_t len)
{
    struct patched_code *c = ctx;
    const pk_region *r = pk_image_region_at(c->img, addr);
    if (!r || len > r->size - (addr - r->vaddr))
        return NULL;
    if (r->bits != c->img->patched.bits) {
        c->wrong_bits = r;
        return NULL;
    }
    return c->img->data + r->offset + (addr - r->vaddr);
}

/* A file popek patched carries its patch table in a note: check that the
 * code holds what each patch and jump wrote, then put the original bytes
 * back, so that the code regions read as before patching. A table that
 * does not match the file is refused: it could hide instructions from the
 * scan. */
static pk_status restore_patched(pk_image *img, uint64_t phoff, bool from_segments,
                                 pk_error *err)
{
    const uint8_t *desc;
    size_t desc_len;
    if (!pk_elf_find_note(img->data, img->data_len, &desc, &desc_len))
        return PK_OK;
    pk_error why;
    if (pk_patch_table_decode(desc, desc_len, &img->patched, &why) != PK_OK)
        return pk_fail(err, PK_ERR_FORMAT, "popek patch table: %s", why.msg);
    img->is_patched = true;
    /* Without section headers, code regions are the executable segments;
     * the one popek added (its headers and the table) is not code. */
    uint64_t note_off = (uint64_t)(desc - img->data);
    for (size_t i = 0; from_segments && i < img->nregions; i++) {
        pk_region *r = &img->regions[i];
        if (note_off - r->offset < r->size && phoff - r->offset < r->size) {
            free(r->name);
            memmove(r, r + 1, (img->nregions - i - 1) * sizeof *r);
            img->nregions--;
            break;
        }
    }
    struct patched_code code = { .img = img };
    if (pk_patch_table_check_code(&img->patched, patched_code_at, &code, &why) != PK_OK) {
        if (code.wrong_bits)
            return pk_fail(err, PK_ERR_FORMAT, "popek patch table: %u-bit, the code is %u-bit",
                           img->patched.bits, code.wrong_bits->bits);
        return pk_fail(err, PK_ERR_FORMAT, "popek patch table: %s", why.msg);
    }
    pk_patch_table_restore_code(&img->patched, patched_code_at, &code);
    return PK_OK;
}

/* The x86 feature bits of the GNU property note (PT_GNU_PROPERTY), which
 * say whether the program runs with IBT or a shadow stack. Properties are
 * {type, size, data padded to 8 (ELF64) or 4 bytes}. */
static uint32_t x86_features(const pk_image *img, Elf *elf)
{
    const uint8_t *desc;
    size_t len;
    if (!pk_elf_note(img->data, img->data_len, PT_GNU_PROPERTY, "GNU", NT_GNU_PROPERTY_TYPE_0,
                     &desc, &len))
        return 0;
    unsigned align = gelf_getclass(elf) == ELFCLASS64 ? 8 : 4;
    for (size_t p = 0; p + 8 <= len;) {
        uint32_t type, size;
        memcpy(&type, desc + p, 4);
        memcpy(&size, desc + p + 4, 4);
        if (size > len - p - 8)
            break;
        if (type == GNU_PROPERTY_X86_FEATURE_1_AND && size >= 4) {
            uint32_t bits;
            memcpy(&bits, desc + p + 8, 4);
            return bits;
        }
        p += 8 + (size + align - 1) / align * align;
    }
    return 0;
}

static pk_status load_elf(pk_image *img, pk_error *err)
{
    if (elf_version(EV_CURRENT) == EV_NONE)
        return pk_fail(err, PK_ERR_INTERNAL, "libelf: %s", elf_errmsg(-1));
    Elf *elf = elf_memory((char *)img->data, img->data_len);
    if (!elf)
        return pk_fail(err, PK_ERR_FORMAT, "libelf: %s", elf_errmsg(-1));
    img->elf = elf;
    GElf_Ehdr eh;
    if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh))
        return pk_fail(err, PK_ERR_FORMAT, "truncated or corrupt ELF header");
    int cls = gelf_getclass(elf);
    unsigned bits;
    const char *arch;
    if (eh.e_machine == EM_X86_64) {
        bits = 64;
        arch = cls == ELFCLASS32 ? "x32" : "x86-64";
    } else if (eh.e_machine == EM_386 || eh.e_machine == EM_IAMCU) {
        bits = 32;
        arch = "i386";
    } else {
        const char *m = machine_name(eh.e_machine);
        if (m)
            return pk_fail(err, PK_ERR_UNSUPPORTED, "ELF for %s, not x86", m);
        return pk_fail(err, PK_ERR_UNSUPPORTED, "ELF for machine %u, not x86",
                       (unsigned)eh.e_machine);
    }

    /* The header's own counts first: libelf quietly reports no headers
     * where the tables lie outside a truncated image. A zero e_shnum with a
     * section header offset means the count lives in section 0 (more than
     * 0xff00 sections): that one entry must be there. */
    size_t len = img->data_len;
    uint64_t sh_table = (uint64_t)(eh.e_shnum ? eh.e_shnum : eh.e_shoff ? 1 : 0) * eh.e_shentsize;
    if (eh.e_phoff > len || (uint64_t)eh.e_phnum * eh.e_phentsize > len - eh.e_phoff)
        return pk_fail(err, PK_ERR_FORMAT, "truncated: program headers lie past the end of the file");
    if (sh_table && (eh.e_shoff > len || sh_table > len - eh.e_shoff))
        return pk_fail(err, PK_ERR_FORMAT, "truncated: section headers lie past the end of the file");
    size_t phnum = 0, shnum = 0, shstrndx = 0;
    if (elf_getphdrnum(elf, &phnum) != 0 || elf_getshdrnum(elf, &shnum) != 0)
        return pk_fail(err, PK_ERR_FORMAT, "corrupt ELF header: %s", elf_errmsg(-1));
    if (shnum && elf_getshdrstrndx(elf, &shstrndx) != 0)
        return pk_fail(err, PK_ERR_FORMAT, "corrupt section header string table");

    bool pie = false;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_INTERP)
            pie = true;
    }
    snprintf(img->description, sizeof img->description, "ELF%d %s (%s)",
             cls == ELFCLASS64 ? 64 : 32, elf_type_name(eh.e_type, pie), arch);
    if (eh.e_entry && (eh.e_type == ET_EXEC || eh.e_type == ET_DYN)) {
        img->entry = eh.e_entry;
        img->has_entry = true;
    }

    /* Code from executable sections... */
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            return pk_fail(err, PK_ERR_FORMAT, "corrupt section header");
        if (!(sh.sh_flags & SHF_EXECINSTR) || sh.sh_type == SHT_NOBITS || !sh.sh_size)
            continue;
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (!section_in_file(&sh, img->data_len))
            return pk_fail(err, PK_ERR_FORMAT,
                           "truncated: section %s lies past the end of the file",
                           name ? name : "?");
        PK_CHECK(add_region(img, name ? name : "?", sh.sh_addr, sh.sh_offset,
                            img->data + sh.sh_offset, sh.sh_size, bits,
                            (uint32_t)elf_ndxscn(scn), err));
    }
    /* ...or, without section headers, from executable PT_LOAD segments. */
    if (!shnum) {
        for (size_t i = 0; i < phnum; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph))
                return pk_fail(err, PK_ERR_FORMAT, "corrupt program header");
            if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || !ph.p_filesz)
                continue;
            if (ph.p_offset > img->data_len || ph.p_filesz > img->data_len - ph.p_offset)
                return pk_fail(err, PK_ERR_FORMAT,
                               "truncated: segment %zu lies past the end of the file", i);
            char name[32];
            snprintf(name, sizeof name, "LOAD[%zu]", i);
            PK_CHECK(add_region(img, name, ph.p_vaddr, ph.p_offset,
                                img->data + ph.p_offset, ph.p_filesz, bits, 0, err));
        }
    }
    if (!img->nregions)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no executable code (%s)",
                       img->description);
    qsort(img->regions, img->nregions, sizeof *img->regions, compare_regions);

    PK_CHECK(restore_patched(img, eh.e_phoff, !shnum, err));
    img->x86_features = x86_features(img, elf);
    if (!img->nregions)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no executable code (%s)", img->description);
    PK_CHECK(load_elf_symbols(img, elf, img->data_len, eh.e_type == ET_REL, err));
    if (shnum && (eh.e_type == ET_EXEC || eh.e_type == ET_DYN))
        PK_CHECK(load_alternatives(img, elf, shstrndx, img->data_len, err));
    return PK_OK;
}

/* ---- public loaders -------------------------------------------------------- */

/* Puts a+b+c in front of the description the ELF loader wrote. */
static void prefix_description(pk_image *img, const char *a, const char *b, const char *c)
{
    char inner[sizeof img->description];
    memcpy(inner, img->description, sizeof inner);
    snprintf(img->description, sizeof img->description, "%s%s%s%.90s", a, b, c, inner);
}

static bool is_elf(const uint8_t *buf, size_t len)
{
    return len >= 4 && !memcmp(buf, ELFMAG, SELFMAG);
}

static pk_status set_path(pk_image *img, const char *path, pk_error *err)
{
    img->path = strdup(path);
    return img->path ? PK_OK : pk_fail(err, PK_ERR_NOMEM, "out of memory");
}

pk_status pk_image_load_file(pk_image *img, const char *path, pk_error *err)
{
    memset(img, 0, sizeof *img);
    pk_status s = set_path(img, path, err);
    if (s == PK_OK)
        s = read_whole_file(path, &img->data, &img->data_len, err);
    if (s != PK_OK)
        goto fail;

    if (!img->data_len) {
        s = pk_fail(err, PK_ERR_FORMAT, "empty file");
    } else if (is_elf(img->data, img->data_len)) {
        img->kind = PK_IMAGE_ELF;
        s = load_elf(img, err);
    } else if (pk_bzimage_detect(img->data, img->data_len)) {
        uint8_t *payload;
        size_t payload_len;
        s = pk_bzimage_extract(img->data, img->data_len, &payload, &payload_len,
                               &img->compression, err);
        if (s == PK_OK) {
            free(img->data);
            img->data = payload;
            img->data_len = payload_len;
            img->kind = PK_IMAGE_BZIMAGE;
            if (!is_elf(payload, payload_len))
                s = pk_fail(err, PK_ERR_UNSUPPORTED,
                            "bzImage payload (%s) is not an ELF vmlinux", img->compression);
            else
                s = load_elf(img, err);
            if (s == PK_OK)
                prefix_description(img, "bzImage, ", img->compression, " payload: ");
        }
    } else if (img->data_len < 4) {
        s = pk_fail(err, PK_ERR_FORMAT, "file too short (%zu bytes) to be ELF or bzImage",
                    img->data_len);
    } else {
        s = pk_fail(err, PK_ERR_UNSUPPORTED,
                    "not an ELF file or bzImage (use --raw for raw code)");
    }
    if (s == PK_OK)
        return PK_OK;
fail:
    pk_image_free(img);
    return s;
}

/* Starts an image named name holding a copy of buf. */
static pk_status start_from_memory(pk_image *img, const uint8_t *buf, size_t len,
                                   const char *name, pk_error *err)
{
    memset(img, 0, sizeof *img);
    PK_CHECK(set_path(img, name, err));
    if (!(img->data = malloc(len ? len : 1)))
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    memcpy(img->data, buf, len);
    img->data_len = len;
    return PK_OK;
}

pk_status pk_image_load_elf_memory(pk_image *img, const uint8_t *buf,
                                   size_t len, const char *name, pk_error *err)
{
    pk_status s = start_from_memory(img, buf, len, name, err);
    if (s == PK_OK) {
        img->kind = PK_IMAGE_ELF;
        if (!len)
            s = pk_fail(err, PK_ERR_FORMAT, "empty image");
        else if (!is_elf(buf, len))
            s = pk_fail(err, PK_ERR_UNSUPPORTED, "not an ELF image");
        else
            s = load_elf(img, err);
    }
    if (s != PK_OK)
        pk_image_free(img);
    return s;
}

static pk_status load_raw(pk_image *img, unsigned bits, uint64_t base, pk_error *err)
{
    if (bits != 16 && bits != 32 && bits != 64)
        return pk_fail(err, PK_ERR_USAGE, "--bits must be 16, 32 or 64");
    if (!img->data_len)
        return pk_fail(err, PK_ERR_FORMAT, "empty file");
    if (base + img->data_len - 1 < base)
        return pk_fail(err, PK_ERR_USAGE, "--base plus the file size overflows");
    img->kind = PK_IMAGE_RAW;
    snprintf(img->description, sizeof img->description, "raw %u-bit code at 0x%llx", bits,
             (unsigned long long)base);
    return add_region(img, "raw", base, 0, img->data, img->data_len, bits, 0, err);
}

pk_status pk_image_load_raw(pk_image *img, const char *path, unsigned bits,
                            uint64_t base, pk_error *err)
{
    memset(img, 0, sizeof *img);
    pk_status s = set_path(img, path, err);
    if (s == PK_OK)
        s = read_whole_file(path, &img->data, &img->data_len, err);
    if (s == PK_OK)
        s = load_raw(img, bits, base, err);
    if (s != PK_OK)
        pk_image_free(img);
    return s;
}

pk_status pk_image_load_raw_memory(pk_image *img, const uint8_t *buf, size_t len,
                                   const char *name, unsigned bits, uint64_t base,
                                   pk_error *err)
{
    pk_status s = start_from_memory(img, buf, len, name, err);
    if (s == PK_OK)
        s = load_raw(img, bits, base, err);
    if (s != PK_OK)
        pk_image_free(img);
    return s;
}

pk_status pk_image_load_vdso(pk_image *img, pk_error *err)
{
    memset(img, 0, sizeof *img);
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (!base)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "this process has no vDSO");
    /* The vDSO's size: its mapping in /proc/self/maps. */
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        return pk_fail(err, PK_ERR_IO, "/proc/self/maps: %s", strerror(errno));
    char line[512];
    size_t size = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo == base && strstr(line, "[vdso]")) {
            size = hi - lo;
            break;
        }
    }
    fclose(maps);
    if (!size)
        return pk_fail(err, PK_ERR_IO, "vDSO mapping not found in /proc/self/maps");
    pk_status s = pk_image_load_elf_memory(img, (const uint8_t *)base, size, "[vdso]", err);
    if (s == PK_OK) {
        img->kind = PK_IMAGE_VDSO;
        prefix_description(img, "vDSO of the running kernel, ", "", "");
    }
    return s;
}

pk_status pk_image_add_symbol_map(pk_image *img, const char *path, pk_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return pk_fail(err, PK_ERR_IO, "%s: %s", path, strerror(errno));
    size_t before = img->nsymbols, cap = img->nsymbols, lineno = 0, added = 0, size = 0;
    char *line = NULL;
    pk_status s = PK_OK;
    while (s == PK_OK && getline(&line, &size, f) >= 0) {
        lineno++;
        unsigned long long addr;
        char type;
        int name_at = 0;
        if (sscanf(line, "%llx %c %n", &addr, &type, &name_at) != 2 || !name_at ||
            !line[name_at] || line[name_at] == '\n') {
            s = pk_fail(err, PK_ERR_FORMAT, "%s:%zu: not an nm-style symbol line", path, lineno);
            break;
        }
        line[name_at + strcspn(line + name_at, " \t\r\n")] = 0;
        /* Data symbols matter too: a kernel's tables of code addresses
         * (__start___jump_table ...) are known by them. */
        bool text = strchr("tTwW", type);
        if (type != 'a' && type != 'A')
            s = add_symbol(img, addr, 0, line + name_at, text, region_index_at(img, addr),
                           &cap, err);
        added += text;
    }
    free(line);
    fclose(f);
    if (s == PK_OK && !added)
        s = pk_fail(err, PK_ERR_FORMAT, "%s: no text symbols", path);
    if (s != PK_OK) { /* leave the image as it was */
        for (size_t i = before; i < img->nsymbols; i++)
            free(img->symbols[i].name);
        img->nsymbols = before;
        return s;
    }
    finish_symbols(img);
    return PK_OK;
}

void pk_image_free(pk_image *img)
{
    for (size_t i = 0; i < img->nregions; i++)
        free(img->regions[i].name);
    for (size_t i = 0; i < img->nsymbols; i++)
        free(img->symbols[i].name);
    free(img->regions);
    free(img->symbols);
    free(img->alts);
    pk_patch_table_free(&img->patched);
    if (img->elf)
        elf_end(img->elf);
    free(img->data);
    free(img->path);
    memset(img, 0, sizeof *img);
}

/* ---- lookups --------------------------------------------------------------- */

/* The index of the first element of arr[0, n), sorted by field, whose field
 * is above key. */
#define UPPER_BOUND(arr, n, field, key)                                        \
    ({                                                                         \
        size_t lo_ = 0, hi_ = (n);                                             \
        while (lo_ < hi_) {                                                    \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;                               \
            if ((arr)[mid_].field <= (key))                                    \
                lo_ = mid_ + 1;                                                \
            else                                                               \
                hi_ = mid_;                                                    \
        }                                                                      \
        lo_;                                                                   \
    })

const pk_region *pk_image_region_at(const pk_image *img, uint64_t addr)
{
    size_t lo = UPPER_BOUND(img->regions, img->nregions, vaddr, addr);
    for (size_t i = lo; i-- > 0;) {
        const pk_region *r = &img->regions[i];
        if (addr - r->vaddr < r->size)
            return r;
    }
    return NULL;
}

const pk_symbol *pk_image_symbol_at(const pk_image *img, const pk_region *region,
                                    uint64_t addr)
{
    if (!region && !(region = pk_image_region_at(img, addr)))
        return NULL;
    int32_t ri = (int32_t)(region - img->regions);
    size_t lo = UPPER_BOUND(img->symbols, img->nsymbols, addr, addr);
    /* Walk down to the nearest symbol of the region that covers addr; a
     * sized one that ends below addr may sit inside a larger one. Give up
     * after a few: the address is in a gap. */
    for (size_t i = lo, tries = 0; i-- > 0 && tries < 64;) {
        const pk_symbol *s = &img->symbols[i];
        if (s->addr < region->vaddr)
            break;
        if (s->region != ri)
            continue;
        tries++;
        if (s->size && addr - s->addr >= s->size)
            continue;
        /* Symbols at one address sort functions first, then by name. */
        while (i > 0 && img->symbols[i - 1].addr == s->addr && img->symbols[i - 1].region == ri &&
               (!img->symbols[i - 1].size || addr - s->addr < img->symbols[i - 1].size))
            s = &img->symbols[--i];
        return s;
    }
    return NULL;
}

const pk_alt *pk_image_alt_at(const pk_image *img, uint64_t addr)
{
    size_t lo = UPPER_BOUND(img->alts, img->nalts, repl, addr);
    /* Replacements are at most 255 bytes (repl_len is a u8); entries with
     * none at all (repl_len 0) sit among the others. */
    for (size_t i = lo; i-- > 0 && addr - img->alts[i].repl < 256;)
        if (addr - img->alts[i].repl < img->alts[i].repl_len)
            return &img->alts[i];
    return NULL;
}

size_t pk_elf_build_id(const char *path, uint8_t *id, size_t size)
{
    size_t found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || elf_version(EV_CURRENT) == EV_NONE) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    size_t nphdr;
    if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &nphdr) == 0) {
        for (size_t i = 0; i < nphdr && !found; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_NOTE)
                continue;
            Elf_Data *d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz,
                                               ELF_T_NHDR);
            GElf_Nhdr nh;
            size_t off = 0, name_off, desc_off;
            while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
                if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                    !memcmp((const char *)d->d_buf + name_off, "GNU", 4) &&
                    nh.n_descsz > 0 && nh.n_descsz <= size) {
                    memcpy(id, (const char *)d->d_buf + desc_off, nh.n_descsz);
                    found = nh.n_descsz;
                    break;
                }
            }
        }
    }
    if (elf)
        elf_end(elf);
    close(fd);
    return found;
}
