/* popek — fuzz target: the image loader and the scanner on arbitrary bytes.
 *
 * The first byte picks what the rest is fed to: an ELF image, a bzImage,
 * or raw code of each bitness; whatever loads is then scanned with both
 * sweeps and reported in both formats (symbol and alternatives lookups
 * included); ELF images are then patched (flow facts, the plan with jumps,
 * the file written, which must load and verify again).
 * Build and run with `make fuzz` (clang's libFuzzer, ASan, UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "popek/popek.h"

/* Patches img as `popek patch --set all --passthrough` would (passthrough
 * moves sites too), then checks the result as `popek patch --verify`. */
static void patch(const pk_image *img, const pk_scan *scan)
{
    pk_error err;
    pk_flow flow;
    pk_plan plan;
    uint64_t code;
    uint8_t *out;
    size_t len;
    pk_plan_options po = { .tactic = PK_CHOOSE_AUTO, .passthrough = true, .allow_skip = true };
    if (pk_elf_code_vaddr(img->data, img->data_len, false, &code, NULL, &err) != PK_OK ||
        pk_flow_build(img, &flow, &err) != PK_OK)
        return;
    if (pk_patch_plan(img, scan, &flow, code, &po, &plan, &err) == PK_OK) {
        if (pk_patch_write_elf(img, &plan, &out, &len, &err) == PK_OK) {
            /* What popek wrote, it must read back and verify. */
            pk_image back;
            if (pk_image_load_elf_memory(&back, out, len, "patched", &err) != PK_OK ||
                pk_patch_verify(&back, &err) != PK_OK) {
                fprintf(stderr, "popek wrote a file it refuses: %s\n", err.msg);
                abort();
            }
            pk_image_free(&back);
            free(out);
        }
        pk_plan_free(&plan);
    }
    pk_flow_free(&flow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned how = data[0] % 5;
    data++;
    size--;

    pk_image img;
    pk_error err;
    pk_status s;
    if (how == 0) {
        s = pk_image_load_elf_memory(&img, data, size, "fuzz", &err);
    } else if (how == 1) {
        uint8_t *payload;
        size_t len;
        const char *compression;
        if (pk_bzimage_extract(data, size, &payload, &len, &compression, &err) == PK_OK)
            free(payload);
        return 0;
    } else {
        static const unsigned bits[] = { 16, 32, 64 };
        s = pk_image_load_raw_memory(&img, data, size, "fuzz", bits[how - 2], 0x1000, &err);
    }
    if (s != PK_OK)
        return 0;
    pk_scan scan;
    pk_scan_options opts = { .sets = PK_SET_ALL, .threads = 2, .chunk_size = 64,
                             .flow = true };
    if (pk_scan_image(&img, &opts, &scan, &err) == PK_OK) {
        static FILE *sink;
        if (!sink)
            sink = fopen("/dev/null", "w");
        pk_report_options text = { .format = PK_FORMAT_TEXT, .sweeps = 3 };
        pk_report_options json = { .format = PK_FORMAT_JSON, .sweeps = 3,
                                   .syntax = ZYDIS_FORMATTER_STYLE_ATT };
        pk_report_scan(sink, &img, &scan, &text, &err);
        pk_report_scan(sink, &img, &scan, &json, &err);
        if (how == 0)
            patch(&img, &scan);
        pk_scan_free(&scan);
    }
    pk_image_free(&img);
    return 0;
}
