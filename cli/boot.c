/* popek — `popek boot`: argument parsing; the monitor is in monitor/. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_boot[] =
    "usage: popek boot [OPTIONS] GUEST.elf\n"
    "\n"
    "Runs a guest kernel deprivileged at ring 3 in a sandboxed process. Privileged\n"
    "instructions fault and are emulated (trap-and-emulate); the non-virtualizable\n"
    "ones are patched with INT3 before they can run and emulated against a virtual\n"
    "CPU (scan-and-patch). The guest's serial port (0x3F8) is written to stdout.\n"
    "\n"
    "A 32-bit guest is a Multiboot ELF (the file qemu-system-i386 -kernel boots);\n"
    "a 64-bit guest is an ELF64 entered in long mode with RDI = the Multiboot info.\n"
    "\n"
    "options:\n"
    "  --no-patch          trap-and-emulate only: patch nothing (and see what breaks)\n"
    "  --set SETS          the sets to patch: pg (default), privileged, extended, all\n"
    "  --only ROWS         patch only these catalog rows (comma list; instead of --set)\n"
    "  --patch-privileged  also patch the privileged set, so CLI/STI never fault\n"
    "  --mem SIZE          guest RAM, 1M to 3G in whole pages (default 64M)\n"
    "  --timeout SECONDS   stop the guest after this much time (exit status 122)\n"
    "  --cmdline TEXT      the Multiboot command line\n"
    "  --trace             print each emulated event on stderr\n"
    "  --stats             print counts and the monitor's share of the time at the end\n"
    "  --report FILE       write how the guest ended, and the stats, as JSON to FILE\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: the value the guest wrote to port 0xF4; 120 the guest stopped for\n"
    "good (triple fault, or HLT with nothing to wake it), 121 an instruction the\n"
    "monitor cannot emulate, 122 --timeout, 125 a monitor error (or the guest's\n"
    "output lost), 2 bad usage or a file that is not a guest kernel.\n";

/* A size in decimal, such as 64M, 1G, 4096K or 1048576. */
static bool parse_size(const char *s, uint64_t *bytes)
{
    char digits[32];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof digits)
        return false;
    memcpy(digits, s, n + 1);
    unsigned shift = 0;
    switch (digits[n - 1]) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    }
    if (shift)
        digits[n - 1] = 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(digits, &end, 10);
    if (!isdigit((unsigned char)digits[0]) || *end || errno || v > (UINT64_MAX >> shift))
        return false;
    *bytes = (uint64_t)v << shift;
    return true;
}

int cmd_boot(int argc, char **argv)
{
    enum { O_NO_PATCH = 256, O_SET, O_ONLY, O_PATCH_PRIVILEGED, O_MEM, O_TIMEOUT, O_CMDLINE,
           O_TRACE, O_STATS, O_REPORT };
    static const struct option opts[] = {
        { "no-patch", no_argument, 0, O_NO_PATCH },
        { "set", required_argument, 0, O_SET },
        { "only", required_argument, 0, O_ONLY },
        { "patch-privileged", no_argument, 0, O_PATCH_PRIVILEGED },
        { "mem", required_argument, 0, O_MEM },
        { "timeout", required_argument, 0, O_TIMEOUT },
        { "cmdline", required_argument, 0, O_CMDLINE },
        { "trace", no_argument, 0, O_TRACE },
        { "stats", no_argument, 0, O_STATS },
        { "report", required_argument, 0, O_REPORT },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    pk_scan_options so = { .sets = 0 };
    bool only[PK_CLASS_COUNT], stats = false, privileged = false;
    const char *report = NULL;
    pk_boot_options bo = { .uart = stdout };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'h':
            fputs(usage_boot, stdout);
            return 0;
        case O_NO_PATCH: bo.no_patch = true; break;
        case O_SET:
        case O_ONLY:
            if (filter_option(c == O_ONLY, optarg, &so, only))
                return EXIT_BAD;
            break;
        case O_PATCH_PRIVILEGED: privileged = true; break;
        case O_MEM:
            if (!parse_size(optarg, &bo.mem_size) || bo.mem_size < (1u << 20) ||
                bo.mem_size > (3ull << 30) || bo.mem_size % 4096)
                return usage_error("--mem: '%s' is not a size from 1M to 3G in whole "
                                   "4 KiB pages", optarg);
            break;
        case O_TIMEOUT:
            errno = 0;
            bo.timeout = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(bo.timeout > 0) || bo.timeout > 1e6)
                return usage_error("--timeout: '%s' is not a number of seconds", optarg);
            break;
        case O_CMDLINE: bo.cmdline = optarg; break;
        case O_TRACE: bo.trace = stderr; break;
        case O_STATS: stats = true; break;
        case O_REPORT: report = optarg; break;
        default: return usage_error("boot: bad option");
        }
    }
    if (argc - optind != 1)
        return usage_error(argc - optind ? "boot: one guest at a time" : "boot: no guest given");
    if (so.only && (so.sets || privileged))
        return usage_error("boot: --only names the rows to patch; drop --set and "
                           "--patch-privileged");
    if (bo.no_patch && (so.sets || so.only || privileged))
        return usage_error("boot: --no-patch patches nothing; drop --set, --only and "
                           "--patch-privileged");
    bo.sets = (so.sets ? so.sets : PK_SET_PG) | (privileged ? PK_SET_PRIVILEGED : 0);
    bo.only = so.only;
    const char *path = argv[optind];
    FILE *report_file = NULL;
    if (report && !(report_file = fopen(report, "w"))) {
        fprintf(stderr, "popek: %s: %s\n", report, strerror(errno));
        return EXIT_BAD;
    }

    pk_boot_result result;
    pk_error err = { { 0 } };
    pk_status s = pk_boot(path, &bo, &result, &err);
    if (s != PK_OK) {
        if (report_file) {
            fclose(report_file);
            remove(report);
        }
        /* The guest never started: its file was bad, or the monitor failed. */
        if (s != PK_ERR_INTERNAL && s != PK_ERR_NOMEM)
            return input_error(path, &err);
        fprintf(stderr, "popek: monitor error: %s\n", err.msg);
        return PK_STATUS_MONITOR_ERROR;
    }
    int out_status = finish_output();
    if (result.end != PK_GUEST_EXIT)
        fprintf(stderr, "popek: %s\n", result.report);
    if (stats)
        pk_boot_print_stats(stderr, &result);
    if (report_file) {
        pk_boot_write_report(report_file, path, &result);
        if (fclose(report_file) != 0) {
            fprintf(stderr, "popek: %s: %s\n", report, strerror(errno));
            out_status = EXIT_BAD;
        }
    }
    /* The guest's transcript lost is the monitor's failure, not the guest's. */
    return out_status ? PK_STATUS_MONITOR_ERROR : result.status;
}
