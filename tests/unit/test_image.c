/* popek — unit tests: image loading, symbols, and robustness against
 * corrupted input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "popek/popek.h"

#include "helpers.h"

Test(image, elf_regions_symbols_and_entry)
{
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_file(&img, "/lib64/ld-linux-x86-64.so.2", &err), PK_OK, "%s",
                 err.msg);
    cr_assert_str_eq(img.description, "ELF64 shared object (x86-64)");
    cr_assert(img.has_entry);
    cr_assert_not_null(pk_image_region_at(&img, img.entry));
    bool text = false;
    for (size_t i = 0; i < img.nregions; i++) {
        text |= !strcmp(img.regions[i].name, ".text");
        cr_assert_eq(img.regions[i].bits, 64);
        if (i)
            cr_assert_leq(img.regions[i - 1].vaddr, img.regions[i].vaddr);
    }
    cr_assert(text);
    cr_assert_gt(img.nsymbols, 0);
    /* Every function symbol of a nonzero size names its own first byte. */
    for (size_t i = 0; i < img.nsymbols; i++) {
        const pk_symbol *s = &img.symbols[i];
        if (s->func && s->size)
            cr_assert_eq(pk_image_symbol_at(&img, NULL, s->addr)->addr, s->addr);
    }
    pk_image_free(&img);
}

Test(image, symbol_map_adds_symbols_text_ones_as_functions)
{
    char path[] = "/tmp/popek-map-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("0000000000001000 T start\n"
          "0000000000001010 t helper\n"
          "0000000000002000 D data\n"
          "0000000000000040 A absolute\n"
          "0000000000001008 W weak\n", f);
    fclose(f);
    static const uint8_t code[0x40] = { 0x90 };
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_raw_memory(&img, code, sizeof code, "raw", 64, 0x1000, &err),
                 PK_OK);
    cr_assert_eq(pk_image_add_symbol_map(&img, path, &err), PK_OK, "%s", err.msg);
    unlink(path);
    cr_assert_eq(img.nsymbols, 4, "all but the absolute symbol");
    for (size_t i = 0; i < img.nsymbols; i++)
        cr_assert_eq(img.symbols[i].func, strcmp(img.symbols[i].name, "data") != 0);
    cr_assert_str_eq(pk_image_symbol_at(&img, NULL, 0x1004)->name, "start");
    cr_assert_str_eq(pk_image_symbol_at(&img, NULL, 0x1008)->name, "weak");
    cr_assert_str_eq(pk_image_symbol_at(&img, NULL, 0x103f)->name, "helper");
    cr_assert_null(pk_image_symbol_at(&img, NULL, 0xfff));
    cr_assert_null(pk_image_symbol_at(&img, NULL, 0x1040), "past the region: no symbol");
    pk_image_free(&img);
}

Test(image, raw_bitness_and_base_are_checked)
{
    static const uint8_t code[] = { 0x90 };
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_raw_memory(&img, code, 1, "raw", 8, 0, &err), PK_ERR_USAGE);
    cr_assert_eq(pk_image_load_raw_memory(&img, code, 0, "raw", 64, 0, &err), PK_ERR_FORMAT);
    cr_assert_eq(pk_image_load_raw_memory(&img, code, 1, "raw", 16, UINT64_MAX, &err), PK_OK);
    pk_image_free(&img);
}

Test(image, elf_from_memory_rejects_other_machines)
{
    size_t len;
    uint8_t *b = slurp("/bin/true", &len);
    b[18] = 183; /* e_machine = EM_AARCH64 */
    b[19] = 0;
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_elf_memory(&img, b, len, "true", &err), PK_ERR_UNSUPPORTED);
    cr_assert_str_eq(err.msg, "ELF for aarch64, not x86");
    free(b);
}

/* Random corruption of a real ELF's headers and tables: every load either
 * succeeds or fails with a reason, and a loaded image scans; never a crash
 * (CI runs this under ASan and UBSan). Replay: the seed is in the message. */
Test(image, corrupted_elf_never_crashes, .timeout = 120)
{
    size_t len;
    uint8_t *orig = slurp("/bin/true", &len);
    uint8_t *b = malloc(len);
    unsigned failures = 0;
    for (unsigned seed = 1; seed <= 400; seed++) {
        memcpy(b, orig, len);
        srand(seed);
        int flips = 1 + rand() % 8;
        for (int i = 0; i < flips; i++) {
            /* Mostly the ELF and program headers; sometimes the section
             * header table at the end of the file. */
            size_t at = rand() % 2 ? (size_t)(rand() % 512) : len - 1 - (size_t)(rand() % 2048);
            b[at] = (uint8_t)rand();
        }
        size_t cut = rand() % 4 ? len : (size_t)rand() % len;
        pk_image img;
        pk_error err = { { 0 } };
        pk_status s = pk_image_load_elf_memory(&img, b, cut, "fuzz", &err);
        if (s != PK_OK) {
            cr_assert_neq(err.msg[0], 0, "seed %u: failure without a reason", seed);
            failures++;
            continue;
        }
        pk_scan scan;
        pk_scan_options o = { .sets = PK_SET_ALL };
        cr_assert_eq(pk_scan_image(&img, &o, &scan, &err), PK_OK, "seed %u: %s", seed, err.msg);
        pk_scan_free(&scan);
        pk_image_free(&img);
    }
    cr_assert_gt(failures, 0, "some corruptions must be detected");
    free(b);
    free(orig);
}
