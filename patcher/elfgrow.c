/* popek — growing an ELF file by one loadable segment.
 *
 * Layout of what is appended (P = page size of the new segment):
 *
 *   original file, byte for byte
 *   padding to a multiple of P, or further (see below)
 *   (with a vcpu page: a page of address space left unmapped, where a
 *    monitor puts the page it shares with fast-path trampolines)
 *   +--- new PT_LOAD (R, and X when it holds code), mapped above every
 *   |    existing segment's end (so the heap, placed after the highest
 *   |    segment, stays clear of it), at the address the first segment
 *   |    maps its offset to (so headers are at load base + e_phoff)
 *   |  program header table: the old entries, then the new PT_LOAD and a
 *   |    PT_NOTE; PT_PHDR, if present, now describes this copy
 *   |  code (trampolines), at an address known before it is written
 *   |    (pk_elf_code_vaddr): trampolines and the table that names them
 *   |    are made knowing where they will be
 *   |  the note: "popek", PK_NOTE_PATCH_TABLE, the patch table
 *   +---
 *   .shstrtab copy with ".popek" added, then the section header table with
 *   a `.popek` SHT_NOTE section for the note (only if the file has sections)
 *
 * The file is read with libelf; the few headers written are encoded from the
 * <elf.h> structures, which are the file's layout on a little-endian host
 * (x86 ELF files are little-endian; the program refuses others). */
#include "popek/elfgrow.h"

#include <elf.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>

enum { PAGE = 0x1000, NOTE_ALIGN = 4, CODE_ALIGN = 16 };
#define MAX_PADDING ((uint64_t)256 << 20)

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

/* ---- writing headers in the file's class -------------------------------------------- */

static size_t phdr_size(int cls)
{
    return cls == ELFCLASS64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
}

static size_t shdr_size(int cls)
{
    return cls == ELFCLASS64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
}

static void put_phdr(uint8_t *p, int cls, const GElf_Phdr *g)
{
    if (cls == ELFCLASS64) {
        Elf64_Phdr h = { g->p_type, g->p_flags, g->p_offset, g->p_vaddr, g->p_paddr,
                         g->p_filesz, g->p_memsz, g->p_align };
        memcpy(p, &h, sizeof h);
    } else {
        Elf32_Phdr h = { g->p_type, (Elf32_Off)g->p_offset, (Elf32_Addr)g->p_vaddr,
                         (Elf32_Addr)g->p_paddr, (Elf32_Word)g->p_filesz,
                         (Elf32_Word)g->p_memsz, g->p_flags, (Elf32_Word)g->p_align };
        memcpy(p, &h, sizeof h);
    }
}

static void put_shdr(uint8_t *p, int cls, const GElf_Shdr *g)
{
    if (cls == ELFCLASS64) {
        Elf64_Shdr h = { g->sh_name, g->sh_type, g->sh_flags, g->sh_addr, g->sh_offset,
                         g->sh_size, g->sh_link, g->sh_info, g->sh_addralign, g->sh_entsize };
        memcpy(p, &h, sizeof h);
    } else {
        Elf32_Shdr h = { g->sh_name, g->sh_type, (Elf32_Word)g->sh_flags,
                         (Elf32_Addr)g->sh_addr, (Elf32_Off)g->sh_offset,
                         (Elf32_Word)g->sh_size, g->sh_link, g->sh_info,
                         (Elf32_Word)g->sh_addralign, (Elf32_Word)g->sh_entsize };
        memcpy(p, &h, sizeof h);
    }
}

/* Rewrites the header fields that move: the two tables' offsets and counts. */
static void put_ehdr_tables(uint8_t *file, int cls, uint64_t phoff, unsigned phnum,
                            uint64_t shoff, unsigned shnum)
{
    if (cls == ELFCLASS64) {
        Elf64_Ehdr h;
        memcpy(&h, file, sizeof h);
        h.e_phoff = phoff;
        h.e_phnum = (Elf64_Half)phnum;
        h.e_shoff = shoff;
        h.e_shnum = (Elf64_Half)shnum;
        memcpy(file, &h, sizeof h);
    } else {
        Elf32_Ehdr h;
        memcpy(&h, file, sizeof h);
        h.e_phoff = (Elf32_Off)phoff;
        h.e_phnum = (Elf32_Half)phnum;
        h.e_shoff = (Elf32_Off)shoff;
        h.e_shnum = (Elf32_Half)shnum;
        memcpy(file, &h, sizeof h);
    }
}

/* ---- growth --------------------------------------------------------------------------- */

static size_t note_size(size_t desc_len)
{
    return 12 + align_up(sizeof PK_NOTE_NAME, NOTE_ALIGN) + align_up(desc_len, NOTE_ALIGN);
}

/* What growing a file decides before anything is written. */
typedef struct layout {
    Elf *elf;
    GElf_Ehdr eh;
    int cls;
    GElf_Phdr *ph;          /* phnum + 2 entries, the last two for popek's */
    GElf_Shdr *sh;          /* shnum + 1 entries, the last for .popek */
    size_t phnum, shnum;
    uint64_t top;           /* the highest address a segment reaches */
    uint64_t paddr_delta;   /* physical minus virtual, of the segment at top */
    uint64_t seg_off, seg_vaddr; /* the new segment */
    uint64_t page_vaddr;    /* the vcpu page before it, or 0 */
    size_t phtab;           /* the size of the moved program header table */
    uint64_t code_off;      /* the code, right after it */
} layout;

static void layout_free(layout *l)
{
    free(l->ph);
    free(l->sh);
    if (l->elf)
        elf_end(l->elf);
}

static pk_status layout_init(layout *l, const uint8_t *in, size_t in_len, bool vcpu_page,
                             pk_error *err)
{
    memset(l, 0, sizeof *l);
    if (elf_version(EV_CURRENT) == EV_NONE)
        return pk_fail(err, PK_ERR_INTERNAL, "libelf: %s", elf_errmsg(-1));
    Elf *elf = l->elf = elf_memory((char *)in, in_len);
    GElf_Ehdr *eh = &l->eh;
    if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, eh))
        return pk_fail(err, PK_ERR_FORMAT, "not an ELF file");
    int cls = l->cls = gelf_getclass(elf);
    size_t phnum = l->phnum = eh->e_phnum, shnum = l->shnum = eh->e_shnum;

    if (eh->e_ident[EI_DATA] != ELFDATA2LSB || (eh->e_machine != EM_X86_64 &&
                                                eh->e_machine != EM_386))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "not a little-endian x86 ELF file");
    if (!phnum || phnum == PN_XNUM || eh->e_phentsize != phdr_size(cls))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no program headers to grow");
    if ((eh->e_shoff && !shnum) || shnum >= SHN_LORESERVE ||
        (shnum && eh->e_shentsize != shdr_size(cls)))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "extended section numbering");
    if (shnum && (eh->e_shstrndx == SHN_UNDEF || eh->e_shstrndx >= shnum))
        return pk_fail(err, PK_ERR_FORMAT, "no valid section name table (e_shstrndx %u)",
                       (unsigned)eh->e_shstrndx);
    if (eh->e_phoff > in_len || phnum * phdr_size(cls) > in_len - eh->e_phoff ||
        (shnum && (eh->e_shoff > in_len || shnum * shdr_size(cls) > in_len - eh->e_shoff)))
        return pk_fail(err, PK_ERR_FORMAT, "truncated: header tables lie past the end");

    GElf_Phdr *ph = l->ph = calloc(phnum + 2, sizeof *ph);
    GElf_Shdr *sh = l->sh = calloc(shnum + 1, sizeof *sh);
    if (!ph || !sh)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    /* The highest address any segment takes (the new one goes above it),
     * and how the first segment maps file offsets to addresses. */
    uint64_t base = 0;
    bool have_load = false;
    for (size_t i = 0; i < phnum; i++) {
        if (!gelf_getphdr(elf, (int)i, &ph[i]))
            return pk_fail(err, PK_ERR_FORMAT, "corrupt program header %zu", i);
        if (ph[i].p_type != PT_LOAD)
            continue;
        if (!have_load) {
            base = ph[i].p_vaddr - ph[i].p_offset;
            have_load = true;
        }
        if (ph[i].p_vaddr + ph[i].p_memsz > l->top) {
            l->top = ph[i].p_vaddr + ph[i].p_memsz;
            l->paddr_delta = ph[i].p_paddr - ph[i].p_vaddr;
        }
    }
    if (!have_load)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no loadable segment");
    for (size_t i = 0; i < shnum; i++)
        if (!gelf_getshdr(elf_getscn(elf, i), &sh[i]))
            return pk_fail(err, PK_ERR_FORMAT, "corrupt section header %zu", i);

    /* The new segment: phdrs, code, note. Its address minus its offset is
     * the first segment's, so that the headers sit at (load base + e_phoff)
     * in memory: the dynamic loader and static programs find their own
     * headers there (__ehdr_start + e_phoff), not only through AT_PHDR.
     * Where the segments reach far above the file's end (a large bss), the
     * file is padded to match. */
    l->seg_off = align_up(in_len, PAGE);
    if (l->top - base > l->seg_off)
        l->seg_off = align_up(l->top - base, PAGE);
    if (l->seg_off - in_len > MAX_PADDING)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "the segments reach %llu MiB past the end of the file",
                       (unsigned long long)((l->seg_off - in_len) >> 20));
    if (vcpu_page) {
        /* a whole page (base need not be page-aligned), then the segment */
        uint64_t free = base + l->seg_off;
        l->page_vaddr = align_up(free, PAGE);
        l->seg_off += align_up(l->page_vaddr + PAGE - free, PAGE);
    }
    l->seg_vaddr = base + l->seg_off;
    if (l->seg_vaddr < l->top)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no address space left above the segments");
    l->phtab = (phnum + 2) * phdr_size(cls);
    l->code_off = align_up(l->seg_off + l->phtab, CODE_ALIGN);
    return PK_OK;
}

pk_status pk_elf_code_vaddr(const uint8_t *in, size_t in_len, bool vcpu_page, uint64_t *vaddr,
                            uint64_t *page_vaddr, pk_error *err)
{
    layout l;
    pk_status s = layout_init(&l, in, in_len, vcpu_page, err);
    *vaddr = s == PK_OK ? l.seg_vaddr + (l.code_off - l.seg_off) : 0;
    if (page_vaddr)
        *page_vaddr = s == PK_OK ? l.page_vaddr : 0;
    layout_free(&l);
    return s;
}

pk_status pk_elf_grow(const uint8_t *in, size_t in_len, const uint8_t *note_desc,
                      size_t note_len, const uint8_t *code, size_t code_size, bool vcpu_page,
                      pk_elf_growth *out, pk_error *err)
{
    memset(out, 0, sizeof *out);
    layout l;
    uint8_t *file = NULL;
    pk_status status = layout_init(&l, in, in_len, vcpu_page, err);
    if (status != PK_OK)
        goto done;
    int cls = l.cls;
    GElf_Ehdr eh = l.eh;
    GElf_Phdr *ph = l.ph;
    GElf_Shdr *sh = l.sh;
    size_t phnum = l.phnum, shnum = l.shnum, phtab = l.phtab;
    uint64_t seg_off = l.seg_off, seg_vaddr = l.seg_vaddr, code_off = l.code_off;
    uint64_t note_off = align_up(code_off + code_size, NOTE_ALIGN);
    uint64_t seg_end = note_off + note_size(note_len);
    uint64_t limit = cls == ELFCLASS64 ? UINT64_MAX : UINT32_MAX;
    if (seg_vaddr + (seg_end - seg_off) - 1 > limit ||
        seg_vaddr + (seg_end - seg_off) < seg_vaddr) {
        status = pk_fail(err, PK_ERR_UNSUPPORTED, "no address space left above the segments");
        goto done;
    }
    /* Not loaded: .shstrtab with ".popek", then the section header table. */
    const GElf_Shdr *strsh = shnum ? &sh[eh.e_shstrndx] : NULL;
    uint64_t str_off = seg_end;
    size_t str_len = strsh ? strsh->sh_size + sizeof ".popek" : 0;
    if (strsh && (strsh->sh_type != SHT_STRTAB || strsh->sh_offset > in_len ||
                  strsh->sh_size > in_len - strsh->sh_offset)) {
        status = pk_fail(err, PK_ERR_FORMAT, "corrupt section name table");
        goto done;
    }
    uint64_t sh_off = align_up(str_off + str_len, 8);
    size_t total = shnum ? sh_off + (shnum + 1) * shdr_size(cls) : seg_end;
    if (cls == ELFCLASS32 && total > UINT32_MAX) {
        status = pk_fail(err, PK_ERR_UNSUPPORTED, "the grown file would pass 4 GiB");
        goto done;
    }
    if (!(file = calloc(1, total))) {
        status = pk_fail(err, PK_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(file, in, in_len);

#define VADDR(off) (seg_vaddr + ((off) - seg_off))
    /* Program headers. */
    for (size_t i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR) {
            ph[i].p_offset = seg_off;
            ph[i].p_vaddr = seg_vaddr;
            ph[i].p_paddr = seg_vaddr + l.paddr_delta;
            ph[i].p_filesz = ph[i].p_memsz = phtab;
        }
    ph[phnum] = (GElf_Phdr){
        .p_type = PT_LOAD, .p_flags = code_size ? PF_R | PF_X : PF_R, .p_offset = seg_off,
        .p_vaddr = seg_vaddr,
        .p_paddr = seg_vaddr + l.paddr_delta, .p_filesz = seg_end - seg_off,
        .p_memsz = seg_end - seg_off, .p_align = PAGE,
    };
    ph[phnum + 1] = (GElf_Phdr){
        .p_type = PT_NOTE, .p_flags = PF_R, .p_offset = note_off, .p_vaddr = VADDR(note_off),
        .p_paddr = VADDR(note_off) + l.paddr_delta, .p_filesz = note_size(note_len),
        .p_memsz = note_size(note_len), .p_align = NOTE_ALIGN,
    };
    for (size_t i = 0; i < phnum + 2; i++)
        put_phdr(file + seg_off + i * phdr_size(cls), cls, &ph[i]);

    /* The note. */
    uint32_t nhdr[3] = { sizeof PK_NOTE_NAME, (uint32_t)note_len, PK_NOTE_PATCH_TABLE };
    memcpy(file + note_off, nhdr, sizeof nhdr);
    memcpy(file + note_off + 12, PK_NOTE_NAME, sizeof PK_NOTE_NAME);
    uint64_t desc_off = note_off + 12 + align_up(sizeof PK_NOTE_NAME, NOTE_ALIGN);
    memcpy(file + desc_off, note_desc, note_len);

    /* The code, and INT3 in the alignment gap before it. */
    memset(file + seg_off + phtab, 0xCC, code_off - (seg_off + phtab));
    if (code_size)
        memcpy(file + code_off, code, code_size);

    /* Sections. */
    if (shnum) {
        memcpy(file + str_off, in + strsh->sh_offset, strsh->sh_size);
        memcpy(file + str_off + strsh->sh_size, ".popek", sizeof ".popek");
        sh[shnum] = (GElf_Shdr){
            .sh_name = (GElf_Word)strsh->sh_size, .sh_type = SHT_NOTE, .sh_flags = SHF_ALLOC,
            .sh_addr = VADDR(note_off), .sh_offset = note_off, .sh_size = note_size(note_len),
            .sh_addralign = NOTE_ALIGN,
        };
        sh[eh.e_shstrndx].sh_offset = str_off;
        sh[eh.e_shstrndx].sh_size = str_len;
        for (size_t i = 0; i <= shnum; i++)
            put_shdr(file + sh_off + i * shdr_size(cls), cls, &sh[i]);
    }
    put_ehdr_tables(file, cls, seg_off, (unsigned)phnum + 2, shnum ? sh_off : eh.e_shoff,
                    shnum ? (unsigned)shnum + 1 : 0);

    out->data = file;
    out->len = total;
    out->segment_vaddr = seg_vaddr;
    out->code_vaddr = VADDR(code_off);
    out->code_offset = code_off;
    out->vcpu_page = l.page_vaddr;
    out->note_vaddr = VADDR(desc_off);
    file = NULL;
#undef VADDR
done:
    free(file);
    layout_free(&l);
    return status;
}

const uint8_t *pk_elf_loaded_bytes(const uint8_t *data, size_t len, uint64_t vaddr, size_t size,
                                   bool code)
{
    if (elf_version(EV_CURRENT) == EV_NONE)
        return NULL;
    Elf *elf = elf_memory((char *)data, len);
    const uint8_t *found = NULL;
    size_t phnum = 0;
    if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &phnum) == 0) {
        for (size_t i = 0; i < phnum && !found; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD &&
                (!code || (ph.p_flags & PF_X)) &&
                ph.p_offset <= len && ph.p_filesz <= len - ph.p_offset &&
                vaddr - ph.p_vaddr < ph.p_filesz && size <= ph.p_filesz - (vaddr - ph.p_vaddr))
                found = data + ph.p_offset + (vaddr - ph.p_vaddr);
        }
    }
    if (elf)
        elf_end(elf);
    return found;
}

bool pk_elf_note(const uint8_t *data, size_t len, uint32_t segment_type, const char *name,
                 uint32_t type, const uint8_t **desc, size_t *desc_len)
{
    size_t name_size = strlen(name) + 1;
    if (elf_version(EV_CURRENT) == EV_NONE)
        return false;
    Elf *elf = elf_memory((char *)data, len);
    if (!elf)
        return false;
    bool found = false;
    size_t phnum = 0;
    if (elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &phnum) == 0) {
        for (size_t i = 0; i < phnum && !found; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != segment_type ||
                ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
                continue;
            Elf_Data *d = elf_getdata_rawchunk(elf, (int64_t)ph.p_offset, ph.p_filesz,
                                               ph.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
            GElf_Nhdr nh;
            size_t off = 0, name_at, desc_at;
            while (d && !found && (off = gelf_getnote(d, off, &nh, &name_at, &desc_at)) > 0)
                if (nh.n_type == type && nh.n_namesz == name_size &&
                    !memcmp(data + ph.p_offset + name_at, name, name_size)) {
                    *desc = data + ph.p_offset + desc_at;
                    *desc_len = nh.n_descsz;
                    found = true;
                }
        }
    }
    elf_end(elf);
    return found;
}

bool pk_elf_find_note(const uint8_t *data, size_t len, const uint8_t **desc, size_t *desc_len)
{
    return pk_elf_note(data, len, PT_NOTE, PK_NOTE_NAME, PK_NOTE_PATCH_TABLE, desc, desc_len);
}
