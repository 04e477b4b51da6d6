/* popek — patching an ELF file: the plan (INT3 for now), writing it, and
 * checking a written file against its own table. */
#include "popek/patch.h"

#include <stdlib.h>
#include <string.h>

#include "popek/elfgrow.h"
#include "popek/image.h"
#include "popek/scan.h"

pk_status pk_patch_plan_int3(const pk_image *img, const pk_scan *scan, const bool *only, bool allow_skip, pk_patch_table *table,
                             pk_skip **skips, size_t *nskips, pk_error *err)
{
    memset(table, 0, sizeof *table);
    *skips = NULL;
    *nskips = 0;
    pk_patch *patches = calloc(scan->nsites ? scan->nsites : 1, sizeof *patches);
    pk_skip *skipped = calloc(scan->nsites ? scan->nsites : 1, sizeof *skipped);
    uint8_t *found = calloc(scan->nsites ? scan->nsites : 1, 1); /* found_by per patch */
    if (!patches || !skipped || !found) {
        free(patches);
        free(skipped);
        free(found);
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    }
    size_t n = 0, ns = 0;
    pk_status status = PK_OK;
    for (size_t i = 0; i < scan->nsites && status == PK_OK; i++) {
        const pk_site *s = &scan->sites[i];
        const pk_class *c = pk_class_get((pk_class_id)s->cls);
        bool named = only && only[c->id];
        if ((c->flags & PK_CLASS_OPT_IN) && !named)
            continue;
        if (s->flags & PK_SITE_INSIDE_REACHED) {
            /* Not an instruction: patching it would change a reached one. */
            skipped[ns++] = (pk_skip){ s->vaddr, c->id,
                                       "inside an instruction recursive descent reached" };
            continue;
        }
        /* Sites are sorted by region, then address; regions do not overlap
         * in files that can be patched (relocatable objects have no program
         * headers, and pk_elf_grow refuses them). Of two overlapping sites,
         * the one recursive descent reached is the instruction. */
        if (n && s->vaddr < patches[n - 1].site + patches[n - 1].len) {
            pk_patch *prev = &patches[n - 1];
            bool keep_new = (s->found & PK_FOUND_RECURSIVE) && !(found[n - 1] & PK_FOUND_RECURSIVE);
            bool keep_old = (found[n - 1] & PK_FOUND_RECURSIVE) && !(s->found & PK_FOUND_RECURSIVE);
            if (!keep_new && !keep_old && !allow_skip) {
                status = pk_fail(err, PK_ERR_UNSUPPORTED,
                                 "site 0x%llx (%s) overlaps the instruction at 0x%llx; "
                                 "--allow-skip leaves it out",
                                 (unsigned long long)s->vaddr, c->key,
                                 (unsigned long long)prev->site);
                break;
            }
            if (!keep_new) {
                skipped[ns++] = (pk_skip){ s->vaddr, c->id, "overlaps the instruction before it" };
                continue;
            }
            skipped[ns++] = (pk_skip){ prev->site, prev->cls,
                                       "overlaps an instruction recursive descent reached" };
            n--;
        }
        pk_patch *p = &patches[n];
        found[n++] = s->found;
        *p = (pk_patch){ .site = s->vaddr, .len = s->len, .cls = c->id,
                         .tactic = PK_TACTIC_INT3 };
        memcpy(p->bytes, s->bytes, s->len);
    }
    free(found);
    if (status != PK_OK) {
        free(patches);
        free(skipped);
        return status;
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
