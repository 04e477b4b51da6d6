/* popek — bench/patch: patching a kernel image against scanning it.
 *
 * Usage: patch VMLINUX
 *
 * Times, in one run, what `popek scan` does (load, both sweeps, pg set) and
 * what `popek patch` does (the same, then plan the patches and write the
 * patched file into memory), best of several runs, and prints the ratio.
 * Target (issue: offline patcher): patching at most 3 times the scan. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "popek/popek.h"

enum { RUNS = 5 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what, const pk_error *err)
{
    fprintf(stderr, "bench/patch: %s: %s\n", what, err->msg);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VMLINUX\n", argv[0]);
        return 2;
    }
    double t_scan = 1e9, t_patch = 1e9;
    size_t npatches = 0, out_len = 0;
    for (int run = 0; run < RUNS; run++) {
        for (int patch = 0; patch <= 1; patch++) {
            pk_image img;
            pk_error err;
            pk_scan scan;
            pk_scan_options so = { .sets = PK_SET_PG };
            double t0 = now();
            if (pk_image_load_file(&img, argv[1], &err) != PK_OK)
                fail("load", &err);
            if (pk_scan_image(&img, &so, &scan, &err) != PK_OK)
                fail("scan", &err);
            if (patch) {
                pk_patch_table table;
                pk_skip *skips;
                size_t nskips;
                uint8_t *out;
                if (pk_patch_plan_int3(&img, &scan, NULL, true, &table, &skips, &nskips,
                                       &err) != PK_OK)
                    fail("plan", &err);
                if (pk_patch_write_elf(&img, &table, &out, &out_len, &err) != PK_OK)
                    fail("write", &err);
                npatches = table.count;
                free(out);
                free(skips);
                pk_patch_table_free(&table);
            }
            double t = now() - t0;
            double *best = patch ? &t_patch : &t_scan;
            if (t < *best)
                *best = t;
            pk_scan_free(&scan);
            pk_image_free(&img);
        }
    }
    printf("bench/patch: %s\n", argv[1]);
    printf("  %-40s %8.1f ms\n", "scan (load + both sweeps, pg)", t_scan * 1e3);
    printf("  %-40s %8.1f ms  %zu patches, %zu bytes written\n",
           "patch (the same + plan + write, int3)", t_patch * 1e3, npatches, out_len);
    printf("  patch / scan: %.2fx (target: at most 3x)\n", t_patch / t_scan);
    return 0;
}
