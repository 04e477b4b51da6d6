/* popek — what `popek boot` says of a run: --stats and --report. */
#include "popek/boot.h"

#include <inttypes.h>

#include "../scanner/internal/text.h"

static const char *end_name(pk_guest_end end)
{
    switch (end) {
    case PK_GUEST_EXIT: return "exit";
    case PK_GUEST_TRIPLE_FAULT: return "triple-fault";
    case PK_GUEST_UNSUPPORTED: return "unsupported";
    case PK_GUEST_TIMEOUT: return "timeout";
    case PK_GUEST_MONITOR_ERROR: return "monitor-error";
    }
    return "?";
}

void pk_boot_print_stats(FILE *out, const pk_boot_result *r)
{
    const pk_boot_stats *s = &r->stats;
    double total = (double)s->total_ns / 1e6, monitor = (double)s->monitor_ns / 1e6;
    fprintf(out, "popek: stats: %" PRIu64 " stops, %" PRIu64 " interrupts, %" PRIu64
            " exceptions delivered, %" PRIu64 " host system calls refused\n",
            s->stops, s->interrupts, s->exceptions, s->host_syscalls);
    fprintf(out, "popek: stats: %" PRIu64 " sites patched at boot, %" PRIu64
            " pages scanned when first run, %" PRIu64 " code pages written\n",
            s->sites_patched, s->pages_scanned, s->pages_released);
    fprintf(out, "popek: stats: %.3f ms in the monitor of %.3f ms (%.1f%%)\n", monitor, total,
            total > 0 ? 100 * monitor / total : 0.0);
    fprintf(out, "popek: stats: %-16s %10s %10s\n", "instruction", "patched", "trapped");
    for (int c = 0; c < PK_CLASS_COUNT; c++) {
        if (s->by_patch[c] || s->by_trap[c])
            fprintf(out, "popek: stats: %-16s %10" PRIu64 " %10" PRIu64 "\n",
                    pk_class_get((pk_class_id)c)->key, s->by_patch[c], s->by_trap[c]);
    }
}

void pk_boot_write_report(FILE *out, const char *path, const pk_boot_result *r)
{
    const pk_boot_stats *s = &r->stats;
    fputs("{\"guest\":", out);
    pk_json_string(out, path);
    fprintf(out, ",\"end\":\"%s\",\"status\":%d,\"report\":", end_name(r->end), r->status);
    pk_json_string(out, r->report);
    fprintf(out, ",\"stats\":{\"stops\":%" PRIu64 ",\"interrupts\":%" PRIu64
            ",\"exceptions\":%" PRIu64 ",\"host_syscalls\":%" PRIu64
            ",\"sites_patched\":%" PRIu64 ",\"pages_scanned\":%" PRIu64
            ",\"pages_released\":%" PRIu64 ",\"monitor_ns\":%" PRIu64 ",\"total_ns\":%" PRIu64
            ",\"emulated\":{", s->stops, s->interrupts, s->exceptions, s->host_syscalls,
            s->sites_patched, s->pages_scanned, s->pages_released, s->monitor_ns, s->total_ns);
    const char *sep = "";
    for (int c = 0; c < PK_CLASS_COUNT; c++) {
        if (!s->by_patch[c] && !s->by_trap[c])
            continue;
        fprintf(out, "%s\"%s\":{\"patched\":%" PRIu64 ",\"trapped\":%" PRIu64 "}", sep,
                pk_class_get((pk_class_id)c)->key, s->by_patch[c], s->by_trap[c]);
        sep = ",";
    }
    fputs("}}}\n", out);
}
