/* popek — the scan report: a table for people, JSON lines for scripts. */
#include "popek/report.h"

#include <inttypes.h>
#include <string.h>

#include "internal/decoder.h"
#include "internal/text.h"

/* Everything the report says about one site, computed once for either format. */
typedef struct site_view {
    const pk_site *site;
    const pk_class *cls;
    const pk_region *region;
    uint64_t offset;
    char bytes[3 * 16];
    char insn[96];
    const pk_symbol *sym;
    uint64_t sym_off;
    const pk_alt *alt;       /* set when the site is alternative replacement code */
    uint64_t alt_target;     /* where the kernel copies it at boot */
    const pk_symbol *alt_sym;
    uint64_t alt_sym_off;
} site_view;

static const char *found_name(unsigned found)
{
    switch (found) {
    case PK_FOUND_LINEAR: return "linear";
    case PK_FOUND_RECURSIVE: return "recursive";
    default: return "both";
    }
}

static const char *kind_name(pk_image_kind kind)
{
    switch (kind) {
    case PK_IMAGE_ELF: return "elf";
    case PK_IMAGE_BZIMAGE: return "bzimage";
    case PK_IMAGE_RAW: return "raw";
    case PK_IMAGE_VDSO: return "vdso";
    }
    return "?";
}

static void format_insn(ZydisFormatter *fmt, const pk_region *r, const pk_site *s,
                        char *buf, size_t size)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!pk_decoder_init(&dec, r->bits, false) ||
        ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, s->bytes, s->len, &insn, ops)) ||
        ZYAN_FAILED(ZydisFormatterFormatInstruction(fmt, &insn, ops,
                                                    insn.operand_count_visible, buf,
                                                    size, s->vaddr, NULL)))
        snprintf(buf, size, "?");
}

static void view_site(site_view *v, const pk_image *img, const pk_site *s, ZydisFormatter *fmt)
{
    memset(v, 0, sizeof *v);
    v->site = s;
    v->cls = pk_class_get((pk_class_id)s->cls);
    v->region = &img->regions[s->region];
    v->offset = v->region->offset + (s->vaddr - v->region->vaddr);
    for (unsigned i = 0; i < s->len; i++)
        sprintf(v->bytes + 2 * i, "%02x", s->bytes[i]);
    format_insn(fmt, v->region, s, v->insn, sizeof v->insn);
    v->sym = pk_image_symbol_at(img, v->region, s->vaddr);
    if (v->sym)
        v->sym_off = s->vaddr - v->sym->addr;
    v->alt = pk_image_alt_at(img, s->vaddr);
    if (v->alt) {
        v->alt_target = v->alt->instr + (s->vaddr - v->alt->repl);
        v->alt_sym = pk_image_symbol_at(img, NULL, v->alt_target);
        if (v->alt_sym)
            v->alt_sym_off = v->alt_target - v->alt_sym->addr;
    }
}

static void symbol_text(char *buf, size_t size, const pk_symbol *sym, uint64_t off)
{
    if (!sym)
        snprintf(buf, size, "-");
    else if (off)
        snprintf(buf, size, "%s+0x%" PRIx64, sym->name, off);
    else
        snprintf(buf, size, "%s", sym->name);
}

static void json_symbol(FILE *out, const char *key, const pk_symbol *sym, uint64_t off)
{
    fprintf(out, ",\"%s\":", key);
    if (!sym) {
        fprintf(out, "null,\"%s_offset\":null", key);
        return;
    }
    pk_json_string(out, sym->name);
    fprintf(out, ",\"%s_offset\":%" PRIu64, key, off);
}

static void write_site_json(FILE *out, const site_view *v)
{
    const pk_site *s = v->site;
    fprintf(out, "{\"type\":\"site\",\"address\":\"0x%" PRIx64 "\",\"offset\":%" PRIu64
                 ",\"length\":%u,\"bytes\":\"%s\",\"instruction\":",
            s->vaddr, v->offset, s->len, v->bytes);
    pk_json_string(out, v->insn);
    fprintf(out, ",\"set\":\"%s\",\"row\":\"%s\",\"section\":", pk_set_name(v->cls->set),
            v->cls->key);
    pk_json_string(out, v->region->name);
    json_symbol(out, "symbol", v->sym, v->sym_off);
    fprintf(out, ",\"found_by\":\"%s\",\"inside_reached\":%s", found_name(s->found),
            s->flags & PK_SITE_INSIDE_REACHED ? "true" : "false");
    if (v->alt) {
        fprintf(out, ",\"alt_target\":\"0x%" PRIx64 "\"", v->alt_target);
        json_symbol(out, "alt_target_symbol", v->alt_sym, v->alt_sym_off);
    }
    fputs("}\n", out);
}

static void write_site_text(FILE *out, const site_view *v)
{
    char sym[160], found[16];
    symbol_text(sym, sizeof sym, v->sym, v->sym_off);
    snprintf(found, sizeof found, "%s%s", found_name(v->site->found),
             v->site->flags & PK_SITE_INSIDE_REACHED ? "*" : "");
    fprintf(out, "0x%016" PRIx64 "  0x%08" PRIx64 "  %2u  %-20s  %-30s  %-10s  %-14s  %-12s  %-9s  %s",
            v->site->vaddr, v->offset, v->site->len, v->bytes, v->insn,
            pk_set_name(v->cls->set), v->cls->key, v->region->name, found, sym);
    if (v->alt) {
        char target[160];
        symbol_text(target, sizeof target, v->alt_sym, v->alt_sym_off);
        fprintf(out, "  -> 0x%" PRIx64 "%s%s", v->alt_target, v->alt_sym ? " " : "",
                v->alt_sym ? target : "");
    }
    fputc('\n', out);
}

pk_status pk_report_scan(FILE *out, const pk_image *img, const pk_scan *scan,
                         const pk_report_options *opts, pk_error *err)
{
    ZydisFormatter fmt;
    if (ZYAN_FAILED(ZydisFormatterInit(&fmt, opts->syntax)))
        return pk_fail(err, PK_ERR_INTERNAL, "cannot set up the Zydis formatter");
    bool json = opts->format == PK_FORMAT_JSON;

    uint64_t code = 0;
    for (size_t r = 0; r < img->nregions; r++)
        code += img->regions[r].size;
    if (json) {
        fputs("{\"type\":\"image\",\"path\":", out);
        pk_json_string(out, img->path);
        fprintf(out, ",\"format\":\"%s\",\"description\":", kind_name(img->kind));
        pk_json_string(out, img->description);
        fputs(",\"compression\":", out);
        if (img->compression)
            pk_json_string(out, img->compression);
        else
            fputs("null", out);
        fprintf(out, ",\"regions\":%zu,\"code_bytes\":%" PRIu64 ",\"symbols\":%zu"
                     ",\"alternatives\":%zu,\"patched\":%zu}\n",
                img->nregions, code, img->nsymbols, img->nalts, img->patched.count);
    } else {
        fprintf(out, "%s: %s\n", img->path, img->description);
        fprintf(out, "  %zu code region%s, %" PRIu64 " bytes; %zu symbols", img->nregions,
                img->nregions == 1 ? "" : "s", code, img->nsymbols);
        if (img->nalts)
            fprintf(out, "; %zu alternatives (%u-byte entries)", img->nalts,
                    img->alt_entry_size);
        if (img->is_patched)
            fprintf(out, "\n  patched by popek: %zu sites; the original instructions are shown",
                    img->patched.count);
        fputs("\n\n", out);
        if (scan->nsites)
            fprintf(out, "%-18s  %-10s  %2s  %-20s  %-30s  %-10s  %-14s  %-12s  %-9s  %s\n",
                    "ADDRESS", "OFFSET", "LN", "BYTES", "INSTRUCTION", "SET", "ROW",
                    "SECTION", "FOUND", "SYMBOL");
    }

    size_t per_row[PK_CLASS_COUNT] = { 0 };
    size_t *per_region = calloc(img->nregions ? img->nregions : 1, sizeof *per_region);
    if (!per_region)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < scan->nsites; i++) {
        site_view v;
        view_site(&v, img, &scan->sites[i], &fmt);
        per_row[v.cls->id]++;
        per_region[scan->sites[i].region]++;
        if (json)
            write_site_json(out, &v);
        else
            write_site_text(out, &v);
    }

    /* Summaries. */
    if (!json) {
        size_t inside = 0;
        for (size_t i = 0; i < scan->nsites; i++)
            inside += (scan->sites[i].flags & PK_SITE_INSIDE_REACHED) != 0;
        fprintf(out, "%s%zu site%s", scan->nsites ? "\n" : "", scan->nsites,
                scan->nsites == 1 ? "" : "s");
        if (inside)
            fprintf(out, "; %zu marked linear* lie inside instructions recursive descent "
                         "reached (likely not code)", inside);
        fputs("\n\nby row:\n", out);
    }
    for (unsigned c = 0; c < PK_CLASS_COUNT; c++) {
        if (!per_row[c])
            continue;
        const pk_class *cls = pk_class_get((pk_class_id)c);
        if (json)
            fprintf(out, "{\"type\":\"row\",\"row\":\"%s\",\"set\":\"%s\",\"sites\":%zu}\n",
                    cls->key, pk_set_name(cls->set), per_row[c]);
        else
            fprintf(out, "  %-14s  %-10s  %8zu\n", cls->key, pk_set_name(cls->set), per_row[c]);
    }
    if (!json)
        fputs("by section:\n", out);
    for (size_t r = 0; r < img->nregions; r++) {
        const pk_region *reg = &img->regions[r];
        const pk_region_stats *st = &scan->stats[r];
        if (json) {
            fputs("{\"type\":\"section\",\"section\":", out);
            pk_json_string(out, reg->name);
            fprintf(out, ",\"address\":\"0x%" PRIx64 "\",\"size\":%" PRIu64 ",\"bits\":%u"
                         ",\"sites\":%zu",
                    reg->vaddr, reg->size, reg->bits, per_region[r]);
            if (opts->sweeps & PK_FOUND_LINEAR)
                fprintf(out, ",\"instructions\":%" PRIu64 ",\"undecodable_bytes\":%" PRIu64
                             ",\"padding_int3_bytes\":%" PRIu64 ",\"padding_runs\":%" PRIu64,
                        st->instructions, st->undecodable, st->padding_bytes, st->padding_runs);
            if (opts->sweeps & PK_FOUND_RECURSIVE)
                fprintf(out, ",\"reached_instructions\":%" PRIu64, st->reached);
            fputs("}\n", out);
            continue;
        }
        fprintf(out, "  %-24s %6zu sites  %10" PRIu64 " bytes", reg->name, per_region[r],
                reg->size);
        if (opts->sweeps & PK_FOUND_LINEAR)
            fprintf(out, "  %9" PRIu64 " instructions  %" PRIu64 " undecodable  %" PRIu64
                         " padding int3 in %" PRIu64 " runs",
                    st->instructions, st->undecodable, st->padding_bytes, st->padding_runs);
        if (opts->sweeps & PK_FOUND_RECURSIVE)
            fprintf(out, "  %" PRIu64 " reached by recursive descent", st->reached);
        fputc('\n', out);
    }
    if (json)
        fprintf(out, "{\"type\":\"summary\",\"sites\":%zu}\n", scan->nsites);
    free(per_region);
    return PK_OK;
}

/* The name of the region holding addr, for reports. */
static const char *region_name(const pk_image *img, uint64_t addr)
{
    const pk_region *r = pk_image_region_at(img, addr);
    return r ? r->name : "?";
}

void pk_report_patch(FILE *out, const pk_image *img, const pk_plan *plan, pk_format format,
                     bool full, const char *written)
{
    static const pk_tactic tactics[] = { PK_TACTIC_INT3, PK_TACTIC_JMP,
                                         PK_TACTIC_JMP_DISPLACED };
    const pk_patch_table *table = &plan->table;
    size_t per_row[PK_CLASS_COUNT] = { 0 }, per_tactic[4] = { 0 };
    for (size_t i = 0; i < table->count; i++) {
        per_row[table->patches[i].cls]++;
        per_tactic[table->patches[i].tactic]++;
    }
    bool passthrough = table->flags & PK_TABLE_PASSTHROUGH;
    if (format == PK_FORMAT_JSON) {
        for (size_t i = 0; i < table->count; i++) {
            const pk_patch *p = &table->patches[i];
            fprintf(out, "{\"type\":\"patch\",\"address\":\"0x%" PRIx64 "\",\"length\":%u,"
                         "\"row\":\"%s\",\"tactic\":\"%s\",\"section\":",
                    p->site, p->len, pk_class_get(p->cls)->key, pk_tactic_name(p->tactic));
            pk_json_string(out, region_name(img, p->site));
            if (p->trampoline)
                fprintf(out, ",\"trampoline\":\"0x%" PRIx64 "\"", p->trampoline);
            fputs("}\n", out);
        }
        for (size_t i = 0; i < plan->nskips; i++) {
            const pk_skip *k = &plan->skips[i];
            fprintf(out, "{\"type\":\"skip\",\"address\":\"0x%" PRIx64 "\",\"row\":\"%s\","
                         "\"section\":", k->site, pk_class_get(k->cls)->key);
            pk_json_string(out, region_name(img, k->site));
            fputs(",\"reason\":", out);
            pk_json_string(out, k->reason);
            fputs("}\n", out);
        }
        fprintf(out, "{\"type\":\"summary\",\"patches\":%zu", table->count);
        for (size_t t = 0; t < sizeof tactics / sizeof tactics[0]; t++)
            fprintf(out, ",\"%s\":%zu", pk_tactic_name(tactics[t]), per_tactic[tactics[t]]);
        fprintf(out, ",\"jumps\":%zu,\"trampoline_bytes\":%zu,\"skipped\":%zu,"
                     "\"passthrough\":%s,\"no_jump\":{",
                table->njumps, plan->code_len, plan->nskips, passthrough ? "true" : "false");
        const char *sep = "";
        for (unsigned w = 0; w < PK_NOJUMP_COUNT; w++)
            if (plan->nojump[w]) {
                fputs(sep, out);
                pk_json_string(out, pk_nojump_reason((pk_nojump)w));
                fprintf(out, ":%zu", plan->nojump[w]);
                sep = ",";
            }
        fputs("}}\n", out);
        return;
    }
    for (size_t i = 0; i < plan->nskips; i++)
        fprintf(out, "%s 0x%" PRIx64 " %s: %s\n", passthrough ? "left" : "skipped",
                plan->skips[i].site, pk_class_get(plan->skips[i].cls)->key,
                plan->skips[i].reason);
    if (!full)
        return;
    fprintf(out, "%s: %zu patches, %zu %s%s\n  by tactic:\n", written, table->count,
            plan->nskips, passthrough ? "left as they were" : "skipped",
            passthrough ? " (passthrough)" : "");
    for (size_t t = 0; t < sizeof tactics / sizeof tactics[0]; t++)
        fprintf(out, "    %-14s %8zu\n", pk_tactic_name(tactics[t]), per_tactic[tactics[t]]);
    fprintf(out, "    %zu jumps, %zu bytes of trampolines\n", table->njumps, plan->code_len);
    bool any = false;
    for (unsigned w = 0; w < PK_NOJUMP_COUNT; w++)
        if (plan->nojump[w]) {
            if (!any)
                fputs("  no jump, because:\n", out);
            any = true;
            fprintf(out, "    %-50s %8zu\n", pk_nojump_reason((pk_nojump)w), plan->nojump[w]);
        }
    fputs("  by row:\n", out);
    for (unsigned r = 0; r < PK_CLASS_COUNT; r++)
        if (per_row[r])
            fprintf(out, "    %-14s %8zu\n", pk_class_get((pk_class_id)r)->key, per_row[r]);
}
