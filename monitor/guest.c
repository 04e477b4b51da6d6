/* popek — a guest kernel file: its segments, its entry, the Multiboot info. */
#include "internal/guest.h"

#include <gelf.h>
#include <stdlib.h>
#include <string.h>

/* The Multiboot v1 header must lie, 4-byte aligned, in the first 8 KiB. */
enum { MB_SEARCH = 8192, MB_AOUT_KLUDGE = 1u << 16 };

static const uint8_t *find_multiboot_header(const pk_image *img)
{
    size_t limit = img->data_len < MB_SEARCH ? img->data_len : MB_SEARCH;
    for (size_t off = 0; off + 12 <= limit; off += 4) {
        uint32_t w[3];
        memcpy(w, img->data + off, sizeof w);
        if (w[0] == PK_MULTIBOOT_HEADER && (uint32_t)(w[0] + w[1] + w[2]) == 0)
            return img->data + off;
    }
    return NULL;
}

pk_status pk_guest_read(pk_guest *g, const pk_image *img, pk_error *err)
{
    memset(g, 0, sizeof *g);
    if (img->kind != PK_IMAGE_ELF)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "a guest kernel is an ELF file");
    elf_version(EV_CURRENT);
    Elf *elf = elf_memory((char *)img->data, img->data_len);
    GElf_Ehdr eh;
    size_t nph;
    pk_status s = PK_OK;
    if (!elf || !gelf_getehdr(elf, &eh) || elf_getphdrnum(elf, &nph) != 0) {
        s = pk_fail(err, PK_ERR_FORMAT, "unreadable ELF headers");
        goto out;
    }
    if (eh.e_type != ET_EXEC) {
        s = pk_fail(err, PK_ERR_UNSUPPORTED, "a guest kernel is an ELF executable (ET_EXEC)");
        goto out;
    }
    if (eh.e_ident[EI_CLASS] == ELFCLASS32 && eh.e_machine == EM_386) {
        const uint8_t *mb = find_multiboot_header(img);
        uint32_t flags;
        if (!mb) {
            s = pk_fail(err, PK_ERR_UNSUPPORTED,
                        "a 32-bit guest needs a Multiboot header in its first 8 KiB");
            goto out;
        }
        memcpy(&flags, mb + 4, 4);
        if (flags & MB_AOUT_KLUDGE) {
            s = pk_fail(err, PK_ERR_UNSUPPORTED,
                        "Multiboot a.out addresses (flag 16) are not supported; "
                        "popek loads the ELF segments");
            goto out;
        }
        g->bits = 32;
    } else if (eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_machine == EM_X86_64) {
        g->bits = 64;
    } else {
        s = pk_fail(err, PK_ERR_UNSUPPORTED, "a guest kernel is ELF32 i386 or ELF64 x86-64");
        goto out;
    }
    g->entry = eh.e_entry;
    g->segments = calloc(nph ? nph : 1, sizeof *g->segments);
    if (!g->segments) {
        s = pk_fail(err, PK_ERR_NOMEM, "out of memory");
        goto out;
    }
    g->lowest = UINT64_MAX;
    for (size_t i = 0; i < nph; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, (int)i, &ph)) {
            s = pk_fail(err, PK_ERR_FORMAT, "unreadable program header %zu", i);
            goto out;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_paddr != ph.p_vaddr) {
            s = pk_fail(err, PK_ERR_UNSUPPORTED,
                        "segment %zu loads at 0x%llx but runs at 0x%llx: popek runs guests "
                        "without paging", i, (unsigned long long)ph.p_paddr,
                        (unsigned long long)ph.p_vaddr);
            goto out;
        }
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > img->data_len ||
            ph.p_filesz > img->data_len - ph.p_offset || ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
            s = pk_fail(err, PK_ERR_FORMAT, "segment %zu lies outside the file", i);
            goto out;
        }
        g->segments[g->nsegments++] = (pk_guest_segment){ ph.p_vaddr, ph.p_filesz, ph.p_memsz,
                                                          ph.p_offset };
        if (ph.p_vaddr < g->lowest)
            g->lowest = ph.p_vaddr;
        if (ph.p_vaddr + ph.p_memsz > g->highest)
            g->highest = ph.p_vaddr + ph.p_memsz;
    }
    if (!g->nsegments)
        s = pk_fail(err, PK_ERR_FORMAT, "no loadable segment");
out:
    if (elf)
        elf_end(elf);
    if (s != PK_OK)
        pk_guest_free(g);
    return s;
}

void pk_guest_free(pk_guest *g)
{
    free(g->segments);
    memset(g, 0, sizeof *g);
}

pk_status pk_guest_place(const pk_guest *g, const pk_image *img, uint8_t *ram, uint64_t low,
                         uint64_t size, pk_error *err)
{
    if (g->lowest < low || g->highest > size)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "the guest loads at 0x%llx-0x%llx, outside guest RAM 0x%llx-0x%llx "
                       "(--mem sets its size)",
                       (unsigned long long)g->lowest, (unsigned long long)g->highest,
                       (unsigned long long)low, (unsigned long long)size);
    if (g->entry < g->lowest || g->entry >= g->highest)
        return pk_fail(err, PK_ERR_FORMAT, "the entry point 0x%llx lies in no segment",
                       (unsigned long long)g->entry);
    for (size_t i = 0; i < g->nsegments; i++) {
        const pk_guest_segment *s = &g->segments[i];
        memcpy(ram + s->addr, img->data + s->offset, s->filesz);
        memset(ram + s->addr + s->filesz, 0, s->memsz - s->filesz);
    }
    return PK_OK;
}

/* Multiboot v1 info layout (the Multiboot specification 0.6.96, 3.3). */
enum {
    MBI_FLAGS = 0, MBI_MEM_LOWER = 4, MBI_MEM_UPPER = 8, MBI_BOOT_DEVICE = 12,
    MBI_CMDLINE = 16, MBI_MODS_COUNT = 20, MBI_MODS_ADDR = 24, MBI_MMAP_LENGTH = 44,
    MBI_MMAP_ADDR = 48, MBI_BOOT_LOADER_NAME = 64, MBI_SIZE = 88,
    MBI_HAS_MEMORY = 1 << 0, MBI_HAS_CMDLINE = 1 << 2, MBI_HAS_MODS = 1 << 3,
    MBI_HAS_MMAP = 1 << 6, MBI_HAS_LOADER_NAME = 1 << 9,
    MMAP_AVAILABLE = 1, MMAP_RESERVED = 2,
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint8_t *put_mmap_entry(uint8_t *p, uint64_t base, uint64_t len, uint32_t type)
{
    put32(p, 20); /* the size of the rest of the entry */
    put64(p + 4, base);
    put64(p + 12, len);
    put32(p + 20, type);
    return p + 24;
}

pk_status pk_multiboot_write(const pk_guest *g, uint8_t *ram, uint64_t low, uint64_t size,
                             const char *cmdline, uint64_t *mbi, pk_error *err)
{
    /* The same layout QEMU's PC firmware reports: lower memory up to the
     * EBDA at 639 KiB, the BIOS area, and upper memory from 1 MiB up to the
     * last 128 KiB of RAM, which the firmware keeps for its tables. A guest
     * sees the same mem_lower and mem_upper under both. */
    enum { PAGE = 4096, LOWER_END = 0x9F000, EBDA = 0x9FC00, BIOS = 0xF0000, HIGH = 0x100000,
           FIRMWARE = 128 << 10, MMAP_ENTRIES = 5 };
    static const char loader[] = "popek";
    size_t cmd_len = strlen(cmdline) + 1;
    if (cmd_len > PAGE - MBI_SIZE - MMAP_ENTRIES * 24 - sizeof loader)
        return pk_fail(err, PK_ERR_USAGE, "the guest command line is too long");
    /* The first page below 640 KiB that no segment uses. */
    uint64_t page = (low + PAGE - 1) / PAGE * PAGE;
    for (; page < LOWER_END; page += PAGE) {
        bool used = false;
        for (size_t i = 0; i < g->nsegments; i++)
            used |= page < g->segments[i].addr + g->segments[i].memsz &&
                    g->segments[i].addr < page + PAGE;
        if (!used)
            break;
    }
    if (page >= LOWER_END)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "no free page below 640 KiB for the Multiboot info");

    uint8_t *info = ram + page;
    memset(info, 0, PAGE);
    uint8_t *map = info + MBI_SIZE, *p = map;
    /* The pages below `low` are not backed: the map leaves them out. */
    p = put_mmap_entry(p, low, EBDA - low, MMAP_AVAILABLE);
    p = put_mmap_entry(p, EBDA, 0xA0000 - EBDA, MMAP_RESERVED);
    p = put_mmap_entry(p, BIOS, HIGH - BIOS, MMAP_RESERVED);
    uint64_t upper = size > HIGH + FIRMWARE ? size - FIRMWARE - HIGH : 0;
    if (upper) {
        p = put_mmap_entry(p, HIGH, upper, MMAP_AVAILABLE);
        p = put_mmap_entry(p, HIGH + upper, FIRMWARE, MMAP_RESERVED);
    }
    uint8_t *cmd = p, *name = cmd + cmd_len;
    memcpy(cmd, cmdline, cmd_len);
    memcpy(name, loader, sizeof loader);

    put32(info + MBI_FLAGS, MBI_HAS_MEMORY | MBI_HAS_CMDLINE | MBI_HAS_MODS | MBI_HAS_MMAP |
                                MBI_HAS_LOADER_NAME);
    put32(info + MBI_MEM_LOWER, EBDA / 1024);
    put32(info + MBI_MEM_UPPER, (uint32_t)(upper / 1024));
    put32(info + MBI_MODS_ADDR, (uint32_t)page);
    put32(info + MBI_MMAP_LENGTH, (uint32_t)(p - map));
    put32(info + MBI_MMAP_ADDR, (uint32_t)(page + MBI_SIZE));
    put32(info + MBI_CMDLINE, (uint32_t)(page + (uint64_t)(cmd - info)));
    put32(info + MBI_BOOT_LOADER_NAME, (uint32_t)(page + (uint64_t)(name - info)));
    *mbi = page;
    return PK_OK;
}
