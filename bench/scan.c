/* popek — bench/scan: linear-sweep throughput on a kernel image.
 *
 * Usage: scan IMAGE [OBJDUMP-TARGET]
 *
 * Measures, in one run and over the same code bytes:
 *   zydis    the bare baseline: ZydisDecoderDecodeInstruction in
 *            ZYDIS_DECODER_MODE_MINIMAL, skipping one byte on failure;
 *   popek    pk_scan_image with the linear sweep only, all sets;
 *   objdump  `objdump -d` over the same sections, output discarded;
 * and checks that popek's result equals the reference sequential sweep
 * (pk_scan_region_reference) site for site. IMAGE may be a bzImage; objdump
 * then needs the extracted vmlinux as OBJDUMP-TARGET. Each timing is the best
 * of several runs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "popek/popek.h"

enum { RUNS = 5 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t bare_zydis(const pk_image *img)
{
    uint64_t n = 0;
    for (size_t r = 0; r < img->nregions; r++) {
        const pk_region *reg = &img->regions[r];
        ZydisDecoder dec;
        ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
        if (reg->bits != 64)
            ZydisDecoderInit(&dec, reg->bits == 32 ? ZYDIS_MACHINE_MODE_LEGACY_32
                                                   : ZYDIS_MACHINE_MODE_LEGACY_16,
                             reg->bits == 32 ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
        ZydisDecoderEnableMode(&dec, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE);
        ZydisDecoderContext ctx;
        ZydisDecodedInstruction insn;
        for (uint64_t off = 0; off < reg->size;) {
            if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, &ctx, reg->bytes + off,
                                                           reg->size - off, &insn))) {
                off += insn.length;
                n++;
            } else {
                off++;
            }
        }
    }
    return n;
}

static int check_identical(const pk_image *img, const pk_scan *fast)
{
    pk_scan_options so = { .sets = PK_SET_ALL, .sweeps = PK_FOUND_LINEAR };
    size_t k = 0;
    for (size_t r = 0; r < img->nregions; r++) {
        pk_scan ref;
        pk_error err;
        if (pk_scan_region_reference(img, r, &so, &ref, &err) != PK_OK) {
            fprintf(stderr, "reference sweep: %s\n", err.msg);
            return 1;
        }
        const pk_region_stats *a = &ref.stats[r], *b = &fast->stats[r];
        int bad = a->instructions != b->instructions || a->undecodable != b->undecodable ||
                  a->padding_bytes != b->padding_bytes || a->padding_runs != b->padding_runs;
        for (size_t i = 0; i < ref.nsites && !bad; i++, k++)
            bad = k >= fast->nsites || fast->sites[k].vaddr != ref.sites[i].vaddr ||
                  fast->sites[k].cls != ref.sites[i].cls || fast->sites[k].len != ref.sites[i].len;
        pk_scan_free(&ref);
        if (bad) {
            fprintf(stderr, "MISMATCH in %s\n", img->regions[r].name);
            return 1;
        }
    }
    return k == fast->nsites ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s IMAGE [OBJDUMP-TARGET]\n", argv[0]);
        return 2;
    }
    pk_image img;
    pk_error err;
    if (pk_image_load_file(&img, argv[1], &err) != PK_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 2;
    }
    uint64_t bytes = 0;
    for (size_t r = 0; r < img.nregions; r++)
        bytes += img.regions[r].size;
    double mb = bytes / 1e6;

    double t_zydis = 1e9, t_popek = 1e9, t_popek1 = 1e9, t_objdump = 1e9;
    uint64_t ninsn = 0;
    pk_scan scan = { 0 };
    for (int i = 0; i < RUNS; i++) {
        double t0 = now();
        ninsn = bare_zydis(&img);
        double t1 = now();
        if (t1 - t0 < t_zydis)
            t_zydis = t1 - t0;

        for (unsigned threads = 1; threads <= 2; threads++) {
            pk_scan_options so = { .sets = PK_SET_ALL, .sweeps = PK_FOUND_LINEAR,
                                   .threads = threads == 1 ? 1 : 0 };
            pk_scan_free(&scan);
            t0 = now();
            if (pk_scan_image(&img, &so, &scan, &err) != PK_OK) {
                fprintf(stderr, "scan: %s\n", err.msg);
                return 1;
            }
            t1 = now();
            double *best = threads == 1 ? &t_popek1 : &t_popek;
            if (t1 - t0 < *best)
                *best = t1 - t0;
        }
    }

    /* objdump over the same sections. */
    const char *target = argc == 3 ? argv[2] : argv[1];
    char cmd[8192];
    int len = snprintf(cmd, sizeof cmd, "objdump -d -z --no-show-raw-insn");
    for (size_t r = 0; r < img.nregions; r++)
        len += snprintf(cmd + len, sizeof cmd - len, " -j '%s'", img.regions[r].name);
    snprintf(cmd + len, sizeof cmd - len, " '%s' > /dev/null", target);
    for (int i = 0; i < 2; i++) {
        double t0 = now();
        if (system(cmd) != 0) {
            fprintf(stderr, "objdump failed: %s\n", cmd);
            return 1;
        }
        double t1 = now();
        if (t1 - t0 < t_objdump)
            t_objdump = t1 - t0;
    }

    int mismatch = check_identical(&img, &scan);
    printf("bench/scan: %s\n", img.description);
    printf("  code: %.1f MB in %zu sections, %" PRIu64 " instructions (bare Zydis count)\n",
           mb, img.nregions, ninsn);
    printf("  %-34s %8.1f ms  %8.1f MB/s\n", "bare Zydis loop (baseline)", t_zydis * 1e3,
           mb / t_zydis);
    printf("  %-34s %8.1f ms  %8.1f MB/s  %5.2fx baseline\n", "popek linear sweep, 1 thread",
           t_popek1 * 1e3, mb / t_popek1, t_zydis / t_popek1);
    printf("  %-34s %8.1f ms  %8.1f MB/s  %5.2fx baseline\n", "popek linear sweep, all CPUs",
           t_popek * 1e3, mb / t_popek, t_zydis / t_popek);
    printf("  %-34s %8.1f ms  %8.1f MB/s  popek is %.1fx faster\n", "objdump -d", t_objdump * 1e3,
           mb / t_objdump, t_objdump / t_popek);
    printf("  identical to the reference sequential sweep: %s (%zu sites)\n",
           mismatch ? "NO" : "yes", scan.nsites);
    pk_scan_free(&scan);
    pk_image_free(&img);
    return mismatch;
}
