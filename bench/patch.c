/* popek — bench/patch: patching a kernel image against scanning it.
 *
 * Usage: patch VMLINUX [SYSTEM.MAP]
 *
 * Times, in one run, what `popek scan` does (load, both sweeps, pg set) and
 * what `popek patch` does (the same, gathering control flow as it goes,
 * then the flow facts from the file, the plan with the auto tactic, and the
 * patched file written into memory), best of several runs, and prints the
 * ratio.
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
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s VMLINUX [SYSTEM.MAP]\n", argv[0]);
        return 2;
    }
    double t_scan = 1e9, t_patch = 1e9;
    size_t npatches = 0, njumped = 0, out_len = 0;
    for (int run = 0; run < RUNS; run++) {
        for (int patch = 0; patch <= 1; patch++) {
            pk_image img;
            pk_error err;
            pk_scan scan;
            pk_scan_options so = { .sets = PK_SET_PG, .flow = patch };
            double t0 = now();
            if (pk_image_load_file(&img, argv[1], &err) != PK_OK)
                fail("load", &err);
            if (argc > 2 && pk_image_add_symbol_map(&img, argv[2], &err) != PK_OK)
                fail("symbols", &err);
            if (pk_scan_image(&img, &so, &scan, &err) != PK_OK)
                fail("scan", &err);
            if (patch) {
                pk_flow flow;
                pk_plan plan;
                pk_plan_options po = { .tactic = PK_CHOOSE_AUTO, .allow_skip = true };
                uint64_t code_vaddr;
                uint8_t *out;
                if (pk_elf_code_vaddr(img.data, img.data_len, false, &code_vaddr, NULL, &err) != PK_OK)
                    fail("layout", &err);
                if (pk_flow_build(&img, &flow, &err) != PK_OK)
                    fail("flow", &err);
                if (pk_patch_plan(&img, &scan, &flow, code_vaddr, &po, &plan, &err) != PK_OK)
                    fail("plan", &err);
                if (pk_patch_write_elf(&img, &plan, &out, &out_len, &err) != PK_OK)
                    fail("write", &err);
                npatches = plan.table.count;
                njumped = 0;
                for (size_t i = 0; i < plan.table.count; i++)
                    njumped += plan.table.patches[i].tactic != PK_TACTIC_INT3;
                free(out);
                pk_plan_free(&plan);
                pk_flow_free(&flow);
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
    printf("  %-40s %8.1f ms  %zu patches (%zu by jump), %zu bytes written\n",
           "patch (+ flow, plan, write; auto tactic)", t_patch * 1e3, npatches, njumped,
           out_len);
    printf("  patch / scan: %.2fx (target: at most 3x)\n", t_patch / t_scan);
    return 0;
}
