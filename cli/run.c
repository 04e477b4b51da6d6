/* popek — `popek run`: argument parsing; the monitor is in monitor/. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "popek/run.h"

static const char usage_run[] =
    "usage: popek run [OPTIONS] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs an ordinary Linux program (64- or 32-bit, static or dynamic) under the\n"
    "monitor. Its system calls go to the host kernel; every instruction of the\n"
    "chosen sets is patched (a jump to a trampoline, or INT3) before it can run, in\n"
    "the program, its libraries, the vDSO and code it writes at run time, and is\n"
    "emulated against a virtual CPU. Threads, forks and execs are followed.\n"
    "\n"
    "options:\n"
    "  --set SETS          the sets to patch: pg (default), privileged, extended, all\n"
    "                      (SYSCALL, SYSENTER and INT 0x80 are never patched)\n"
    "  --only ROWS         patch only these catalog rows (comma list; instead of --set)\n"
    "  --no-patch          patch nothing: the program runs traced only\n"
    "  --tactic TACTIC     auto (default): a jump to a trampoline mapped near the\n"
    "                      code where one fits safely, INT3 elsewhere; int3: INT3 only\n"
    "  --fast-path         trampolines emulate PUSHF, POPF, SMSW, SGDT, SIDT, SLDT and\n"
    "                      STR in place, without stopping\n"
    "  --vcpu FILE         the virtual CPU's values: KEY = VALUE lines (gdt_base,\n"
    "                      gdt_limit, idt_base, idt_limit, cr0, tr, ldtr, tsc,\n"
    "                      tsc_aux, cpuid.LEAF[.SUBLEAF] = EAX EBX ECX EDX); by\n"
    "                      default what Linux shows a process (UMIP's values)\n"
    "  --trace             log each patch and each emulated site\n"
    "  --stats             print counts at the end\n"
    "  --log FILE          the monitor's messages go to FILE instead of stderr\n"
    "  --cache DIR         keep scans of files in DIR, so the next run does not scan\n"
    "                      them again (default: $POPEK_CACHE_DIR, else\n"
    "                      $XDG_CACHE_HOME/popek, else ~/.cache/popek)\n"
    "  --no-cache          scan every file afresh and keep nothing\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: the program's own (128+N when signal N killed it); 121 a patched\n"
    "site the monitor cannot run, 125 a monitor error, 2 bad usage or a program\n"
    "that cannot be started.\n";

/* Makes each missing directory of path; false if one cannot be made. */
static bool make_directories(char *path)
{
    for (char *p = path + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            bool ok = mkdir(path, 0755) == 0 || errno == EEXIST;
            *p = c;
            if (!ok)
                return false;
            if (!c)
                return true;
        }
    }
}

/* The scan cache's directory (made if missing), or NULL when there is
 * none to be had: then every run scans afresh. */
static const char *cache_directory(const char *given, char *buf, size_t size)
{
    const char *env;
    if (given)
        snprintf(buf, size, "%s", given);
    else if ((env = getenv("POPEK_CACHE_DIR")) && *env)
        snprintf(buf, size, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env == '/')
        snprintf(buf, size, "%s/popek", env);
    else if ((env = getenv("HOME")) && *env == '/')
        snprintf(buf, size, "%s/.cache/popek", env);
    else
        return NULL;
    return make_directories(buf) ? buf : NULL;
}

int cmd_run(int argc, char **argv)
{
    enum { O_SET = 256, O_ONLY, O_NO_PATCH, O_TACTIC, O_FAST_PATH, O_VCPU, O_TRACE, O_STATS,
           O_LOG, O_CACHE, O_NO_CACHE };
    static const struct option opts[] = {
        { "set", required_argument, 0, O_SET },
        { "only", required_argument, 0, O_ONLY },
        { "no-patch", no_argument, 0, O_NO_PATCH },
        { "tactic", required_argument, 0, O_TACTIC },
        { "fast-path", no_argument, 0, O_FAST_PATH },
        { "vcpu", required_argument, 0, O_VCPU },
        { "trace", no_argument, 0, O_TRACE },
        { "stats", no_argument, 0, O_STATS },
        { "log", required_argument, 0, O_LOG },
        { "cache", required_argument, 0, O_CACHE },
        { "no-cache", no_argument, 0, O_NO_CACHE },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    pk_scan_options so = { .sets = 0 };
    bool only[PK_CLASS_COUNT], stats = false;
    const char *log_path = NULL, *vcpu_path = NULL, *cache = NULL;
    bool no_cache = false;
    pk_run_options ro = { .log = NULL };
    optind = 1;
    int c;
    /* '+': the program's own options are not ours. */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_run, stdout);
            return 0;
        case O_SET:
        case O_ONLY:
            if (filter_option(c == O_ONLY, optarg, &so, only))
                return EXIT_BAD;
            break;
        case O_NO_PATCH: ro.no_patch = true; break;
        case O_TACTIC:
            if (strcmp(optarg, "auto") && strcmp(optarg, "int3"))
                return usage_error("--tactic: '%s' is not auto or int3", optarg);
            ro.int3_only = !strcmp(optarg, "int3");
            break;
        case O_FAST_PATH: ro.fast_path = true; break;
        case O_VCPU: vcpu_path = optarg; break;
        case O_TRACE: ro.trace = true; break;
        case O_STATS: stats = true; break;
        case O_LOG: log_path = optarg; break;
        case O_CACHE: cache = optarg; break;
        case O_NO_CACHE: no_cache = true; break;
        default: return usage_error("run: bad option");
        }
    }
    if (optind >= argc)
        return usage_error("run: no program given");
    if (ro.no_patch && (so.sets || so.only))
        return usage_error("run: --no-patch patches nothing; drop --set and --only");
    if (ro.fast_path && (ro.no_patch || ro.int3_only))
        return usage_error("run: --fast-path lives in trampolines: not with %s",
                           ro.no_patch ? "--no-patch" : "--tactic int3");
    ro.sets = so.sets ? so.sets : PK_SET_PG;
    ro.only = so.only;

    pk_run_profile profile;
    pk_run_profile_default(&profile);
    pk_error err = { { 0 } };
    if (vcpu_path) {
        if (pk_run_profile_load(&profile, vcpu_path, &err) != PK_OK)
            return input_error(vcpu_path, &err);
    }
    ro.profile = &profile;
    char cache_dir[4096];
    if (!no_cache)
        ro.cache_dir = cache_directory(cache, cache_dir, sizeof cache_dir);
    /* A directory asked for by name must be usable; the default one may
     * not be (no home): then every run scans afresh. */
    if (cache && !no_cache && !ro.cache_dir) {
        fprintf(stderr, "popek: --cache %s: %s\n", cache, strerror(errno));
        return EXIT_BAD;
    }
    FILE *log = NULL;
    if (log_path) {
        /* Not inherited by the program. */
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd < 0 || !(log = fdopen(fd, "w"))) {
            fprintf(stderr, "popek: %s: %s\n", log_path, strerror(errno));
            return EXIT_BAD;
        }
        ro.log = log;
    }

    pk_run_result result;
    pk_status s = pk_run(argv + optind, &ro, &result, &err);
    FILE *out = log ? log : stderr;
    int status;
    if (s != PK_OK) {
        if (s == PK_ERR_IO)
            fprintf(stderr, "popek: %s: %s\n", argv[optind], err.msg);
        else
            fprintf(stderr, "popek: monitor error: %s\n", err.msg);
        status = s == PK_ERR_IO ? EXIT_BAD : 125;
    } else {
        if (result.monitor_ended)
            fprintf(out, "popek: %s\n", result.report);
        if (stats)
            pk_run_print_stats(out, &result);
        status = result.status;
    }
    if (log && fclose(log) != 0) {
        fprintf(stderr, "popek: %s: %s\n", log_path, strerror(errno));
        if (status == 0)
            status = EXIT_BAD;
    }
    return status;
}
