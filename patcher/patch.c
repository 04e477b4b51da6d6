/* popek — patching an ELF file: the plan (INT3 for now), writing it, and
 * checking a written file against its own table. */
#include "popek/patch.h"

#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "popek/elfgrow.h"
#include "popek/image.h"
#include "popek/scan.h"

pk_status pk_patch_plan_int3(const pk_image *img, const pk_scan *scan, const bool *only,
                             bool allow_skip, pk_patch_table *table, pk_skip **skips,
                             size_t *nskips, pk_error *err)
{
    memset(table, 0, sizeof *table);
    *skips = NULL;
    *nskips = 0;
    pk_patch *patches = calloc(scan->nsites ? scan->nsites : 1, sizeof *patches);
    pk_skip *skipped = calloc(scan->nsites ? scan->nsites : 1, sizeof *skipped);
    if (!patches || !skipped) {
        free(patches);
        free(skipped);
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    size_t n = 0, ns = 0;
    for (size_t i = 0; i < scan->nsites; i++) {
        const pk_site *s = &scan->sites[i];
        const pk_class *c = pk_class_get((pk_class_id)s->cls);
        if ((c->flags & PK_CLASS_OPT_IN) && !(only && only[c->id]))
            continue;
        /* Sites are sorted by region, then address; regions do not overlap
         * in files that can be patched (relocatable objects have no program
         * headers, and pk_elf_grow refuses them). */
        if (n && s->vaddr < patches[n - 1].site + patches[n - 1].len) {
            if (!allow_skip) {
                pk_fail(err, PK_ERR_UNSUPPORTED,
                        "site 0x%llx (%s) overlaps the instruction at 0x%llx; "
                        "--allow-skip leaves it out",
                        (unsigned long long)s->vaddr, c->key,
                        (unsigned long long)patches[n - 1].site);
                free(patches);
                free(skipped);
                return PK_ERR_UNSUPPORTED;
            }
            skipped[ns++] = (pk_skip){ s->vaddr, c->id, "overlaps the instruction before it" };
            continue;
        }
        pk_patch *p = &patches[n++];
        p->site = s->vaddr;
        p->len = s->len;
        memcpy(p->bytes, s->bytes, s->len);
        p->cls = c->id;
        p->tactic = PK_TACTIC_INT3;
    }
    table->bits = img->nregions ? img->regions[0].bits : 64;
    table->patches = patches;
    table->count = n;
    if (ns) {
        *skips = skipped;
        *nskips = ns;
    } else {
        free(skipped);
    }
    return PK_OK;
}

pk_status pk_patch_write_elf(const pk_image *img, const pk_patch_table *table, uint8_t **out,
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
    uint8_t *encoded;
    size_t encoded_len;
    PK_CHECK(pk_patch_table_encode(table, &encoded, &encoded_len, err));
    pk_elf_growth g;
    pk_status s = pk_elf_grow(img->data, img->data_len, encoded, encoded_len, 0, &g, err);
    free(encoded);
    if (s != PK_OK)
        return s;
    for (size_t i = 0; i < table->count; i++) {
        const pk_patch *p = &table->patches[i];
        const pk_region *r = pk_image_region_at(img, p->site);
        if (!r || p->site + p->len > r->vaddr + r->size) {
            free(g.data);
            return pk_fail(err, PK_ERR_USAGE, "patch at 0x%llx is not in code",
                           (unsigned long long)p->site);
        }
        g.data[r->offset + (p->site - r->vaddr)] = 0xCC; /* PK_TACTIC_INT3 */
    }
    *out = g.data;
    *len = g.len;
    return PK_OK;
}

/* The file offset of addr through the PT_LOAD segments, or false. */
static bool file_offset(Elf *elf, uint64_t addr, uint64_t size, uint64_t *off)
{
    size_t phnum;
    if (elf_getphdrnum(elf, &phnum) != 0)
        return false;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && addr >= ph.p_vaddr &&
            addr - ph.p_vaddr < ph.p_filesz && size <= ph.p_filesz - (addr - ph.p_vaddr)) {
            *off = ph.p_offset + (addr - ph.p_vaddr);
            return true;
        }
    }
    return false;
}

pk_status pk_patch_verify(const uint8_t *file, size_t len, size_t *checked, pk_error *err)
{
    *checked = 0;
    const uint8_t *desc;
    size_t desc_len;
    if (!pk_elf_find_note(file, len, &desc, &desc_len))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "not patched by popek (no popek note)");
    pk_patch_table table;
    PK_CHECK(pk_patch_table_decode(desc, desc_len, &table, err));
    Elf *elf = elf_memory((char *)file, len);
    pk_status s = elf ? PK_OK : pk_fail(err, PK_ERR_FORMAT, "libelf: %s", elf_errmsg(-1));
    for (size_t i = 0; i < table.count && s == PK_OK; i++) {
        const pk_patch *p = &table.patches[i];
        uint64_t off;
        if (!file_offset(elf, p->site, p->len, &off))
            s = pk_fail(err, PK_ERR_FORMAT, "patch %zu: site 0x%llx is not in the file", i,
                        (unsigned long long)p->site);
        else if (p->tactic != PK_TACTIC_INT3)
            s = pk_fail(err, PK_ERR_UNSUPPORTED, "patch %zu: %s patches cannot be checked yet",
                        i, pk_tactic_name(p->tactic));
        else if (file[off] != 0xCC || memcmp(file + off + 1, p->bytes + 1, p->len - 1))
            s = pk_fail(err, PK_ERR_FORMAT,
                        "patch %zu at 0x%llx: the file does not hold INT3 and the original %s",
                        i, (unsigned long long)p->site, pk_class_get(p->cls)->key);
        else
            (*checked)++;
    }
    if (elf)
        elf_end(elf);
    pk_patch_table_free(&table);
    return s;
}
