/* popek — command-line interface: argument parsing and the subcommands. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_main[] =
    "usage: popek COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Finds the x86 instructions that break trap-and-emulate virtualization.\n"
    "\n"
    "commands:\n"
    "  scan      list the sensitive instructions of an ELF file, kernel or blob\n"
    "  explain   print the catalog of sensitive instructions, or one row of it\n"
    "  patch     rewrite an ELF file so that its sensitive instructions trap\n"
    "  extract   write the vmlinux inside a bzImage (/boot/vmlinuz-*)\n"
    "  boot      run a guest kernel deprivileged at ring 3 under the monitor\n"
    "  run       run a Linux program under the monitor, patched live\n"
    "\n"
    "`popek COMMAND --help` describes each command. Exit status: 0 on success,\n"
    "2 on bad usage or bad input (boot and run: see their --help).\n";

static const char usage_scan[] =
    "usage: popek scan [OPTIONS] FILE\n"
    "       popek scan --vdso [OPTIONS]\n"
    "       popek scan --raw --bits 16|32|64 [--base ADDR] [OPTIONS] FILE\n"
    "\n"
    "Lists every instruction of the catalog found in FILE's code: ELF32/ELF64\n"
    "executables, shared objects, relocatable objects and kernel images, Linux\n"
    "bzImages (the payload is decompressed), raw code, or this kernel's vDSO.\n"
    "\n"
    "options:\n"
    "  --set SETS          pg (default), privileged, extended, all, or a comma list\n"
    "  --only ROWS         only these catalog rows (keys or mnemonics, comma list)\n"
    "  --sweep KIND        linear, recursive, or both (default: both)\n"
    "  --format FMT        text (default) or json (one object per line)\n"
    "  --syntax SYNTAX     intel (default) or att\n"
    "  --symbols MAP       add symbols from an nm-style map (System.map)\n"
    "  --raw               FILE is raw code; needs --bits, takes --base\n"
    "  --bits N            bitness of raw code: 16, 32 or 64\n"
    "  --base ADDR         address of the first byte of raw code (default 0)\n"
    "  --vdso              scan the running kernel's vDSO\n"
    "  --threads N         threads for the linear sweep (default: one per CPU)\n"
    "  -h, --help          show this help\n";

static const char usage_explain[] =
    "usage: popek explain [--set SETS] [--format text|markdown|json] [ROW]\n"
    "\n"
    "Prints the catalog: for every sensitive instruction family, the modes it\n"
    "exists in, what it does at CPL 3, which Popek-Goldberg requirement it\n"
    "breaks and what a monitor emulates. With ROW (a key such as `popf`, a\n"
    "name, or a mnemonic such as `pushfq`), prints that row in full.\n"
    "\n"
    "options:\n"
    "  --set SETS          rows of these sets (default: all)\n"
    "  --format FMT        text (default), markdown, or json (one object per line)\n"
    "  -h, --help          show this help\n";

static const char usage_patch[] =
    "usage: popek patch [OPTIONS] IN -o OUT\n"
    "       popek patch --verify FILE\n"
    "\n"
    "Writes OUT: the ELF file IN with every site `popek scan` finds (same --set\n"
    "and --only) replaced so that it can no longer run natively, trampolines in a\n"
    "segment added to the file, and the patch table a monitor needs to emulate\n"
    "the originals, as a note there. `popek scan OUT` reports the original\n"
    "instructions. IN is never modified; OUT keeps IN's mode bits.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT    the file to write (required)\n"
    "  --set SETS          pg (default), privileged, extended, all, or a comma list\n"
    "  --only ROWS         only these catalog rows (INT3 and INT1 only this way)\n"
    "  --symbols MAP       add symbols from an nm-style map (System.map)\n"
    "  --tactic TACTIC     auto (default): a jmp to a trampoline where one fits\n"
    "                      safely, else INT3; jmp: jumps only; int3: INT3 only\n"
    "  --passthrough       trampolines run the original instructions instead of\n"
    "                      entering a monitor; sites that could only take INT3\n"
    "                      are left as they were (proves the rewriting)\n"
    "  --fast-path         trampolines emulate PUSHF, POPF, CLI, STI, SMSW, SLDT,\n"
    "                      STR, SGDT, SIDT and MOV from a segment register in\n"
    "                      place, against a vcpu page the monitor maps at an\n"
    "                      address the file reserves (docs/fastpath.md)\n"
    "  --allow-skip        leave out sites that cannot be patched, and list them\n"
    "  --report            print the patches per tactic and why sites took no jump\n"
    "  --format FMT        text (default) or json (one object per line)\n"
    "  --verify            check FILE's patches and trampolines against its table\n"
    "  -h, --help          show this help\n";

static const char usage_extract[] =
    "usage: popek extract BZIMAGE -o OUT\n"
    "\n"
    "Decompresses the payload of a Linux bzImage (gzip, xz, zstd or lz4) and\n"
    "writes it, the kernel's vmlinux ELF image, to OUT.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT    the file to write (required)\n"
    "  -h, --help          show this help\n";

int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("popek: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs("Try `popek --help` or `popek COMMAND --help`.\n", stderr);
    return EXIT_BAD;
}

int input_error(const char *what, const pk_error *err)
{
    fprintf(stderr, "popek: %s: %s\n", what, err->msg);
    return EXIT_BAD;
}

bool parse_u64(const char *s, uint64_t *v)
{
    if (!isxdigit((unsigned char)s[0]))
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || *end)
        return false;
    *v = x;
    return true;
}

/* Parses a comma list of catalog rows into only[]. */
static bool parse_only(const char *list, bool only[PK_CLASS_COUNT], char *bad, size_t badsize)
{
    char copy[512];
    if (strlen(list) >= sizeof copy) {
        snprintf(bad, badsize, "%.40s...", list);
        return false;
    }
    strcpy(copy, list);
    memset(only, 0, PK_CLASS_COUNT * sizeof *only);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const pk_class *c = pk_class_find(tok);
        if (!c) {
            snprintf(bad, badsize, "%s", tok);
            return false;
        }
        only[c->id] = true;
    }
    return true;
}

int finish_output(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "popek: writing the output: %s\n", strerror(errno));
        return EXIT_BAD;
    }
    return 0;
}

int filter_option(bool is_only, const char *arg, pk_scan_options *so,
                  bool only[PK_CLASS_COUNT])
{
    char bad[128];
    if (!is_only) {
        if (!pk_set_parse(arg, &so->sets))
            return usage_error("--set: unknown set '%s' (pg, privileged, extended, all)", arg);
        return 0;
    }
    if (!parse_only(arg, only, bad, sizeof bad))
        return usage_error("--only: no catalog row '%s' (see popek explain)", bad);
    so->only = only;
    return 0;
}

/* ---- progress ---------------------------------------------------------------------- */

static void show_progress(void *ctx, uint64_t done, uint64_t total)
{
    const char *path = ctx;
    fprintf(stderr, "\rpopek: scanning %s: %3u%%", path,
            total ? (unsigned)(done * 100 / total) : 100);
}

/* ---- scan ------------------------------------------------------------------------------ */

static int cmd_scan(int argc, char **argv)
{
    enum { O_SET = 256, O_ONLY, O_SWEEP, O_FORMAT, O_SYNTAX, O_SYMBOLS, O_RAW, O_BITS,
           O_BASE, O_VDSO, O_THREADS };
    static const struct option opts[] = {
        { "set", required_argument, 0, O_SET },
        { "only", required_argument, 0, O_ONLY },
        { "sweep", required_argument, 0, O_SWEEP },
        { "format", required_argument, 0, O_FORMAT },
        { "syntax", required_argument, 0, O_SYNTAX },
        { "symbols", required_argument, 0, O_SYMBOLS },
        { "raw", no_argument, 0, O_RAW },
        { "bits", required_argument, 0, O_BITS },
        { "base", required_argument, 0, O_BASE },
        { "vdso", no_argument, 0, O_VDSO },
        { "threads", required_argument, 0, O_THREADS },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    pk_scan_options so = { .sets = PK_SET_PG };
    pk_report_options ro = { .format = PK_FORMAT_TEXT, .syntax = ZYDIS_FORMATTER_STYLE_INTEL };
    bool only[PK_CLASS_COUNT], raw = false, vdso = false, have_bits = false, have_base = false;
    const char *symbols = NULL;
    uint64_t bits = 0, base = 0, threads = 0;

    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_scan, stdout);
            return 0;
        case O_SET:
        case O_ONLY:
            if (filter_option(c == O_ONLY, optarg, &so, only))
                return EXIT_BAD;
            break;
        case O_SWEEP:
            if (!strcmp(optarg, "linear")) so.sweeps = PK_FOUND_LINEAR;
            else if (!strcmp(optarg, "recursive")) so.sweeps = PK_FOUND_RECURSIVE;
            else if (!strcmp(optarg, "both")) so.sweeps = PK_FOUND_LINEAR | PK_FOUND_RECURSIVE;
            else return usage_error("--sweep: '%s' is not linear, recursive or both",
                                    optarg);
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "text")) ro.format = PK_FORMAT_TEXT;
            else if (!strcmp(optarg, "json")) ro.format = PK_FORMAT_JSON;
            else return usage_error("--format: '%s' is not text or json", optarg);
            break;
        case O_SYNTAX:
            if (!strcmp(optarg, "intel")) ro.syntax = ZYDIS_FORMATTER_STYLE_INTEL;
            else if (!strcmp(optarg, "att")) ro.syntax = ZYDIS_FORMATTER_STYLE_ATT;
            else return usage_error("--syntax: '%s' is not intel or att", optarg);
            break;
        case O_SYMBOLS: symbols = optarg; break;
        case O_RAW: raw = true; break;
        case O_VDSO: vdso = true; break;
        case O_BITS:
            if (!parse_u64(optarg, &bits) || (bits != 16 && bits != 32 && bits != 64))
                return usage_error("--bits: '%s' is not 16, 32 or 64", optarg);
            have_bits = true;
            break;
        case O_BASE:
            if (!parse_u64(optarg, &base))
                return usage_error("--base: '%s' is not an address", optarg);
            have_base = true;
            break;
        case O_THREADS:
            if (!parse_u64(optarg, &threads) || threads < 1 || threads > 64)
                return usage_error("--threads: '%s' is not 1..64", optarg);
            break;
        default:
            return usage_error("scan: bad option");
        }
    }
    int nargs = argc - optind;
    if (vdso && (nargs || raw))
        return usage_error("scan: --vdso takes no FILE and no --raw");
    if (!vdso && nargs != 1)
        return usage_error(nargs ? "scan: one FILE at a time" : "scan: no FILE given");
    if (raw && !have_bits)
        return usage_error("scan: --raw needs --bits 16|32|64");
    if (!raw && (have_bits || have_base))
        return usage_error("scan: --bits and --base go with --raw");
    so.threads = (unsigned)threads;
    ro.sweeps = so.sweeps ? so.sweeps : PK_FOUND_LINEAR | PK_FOUND_RECURSIVE;

    const char *path = vdso ? "[vdso]" : argv[optind];
    pk_image img;
    pk_error err = { { 0 } };
    pk_status s = vdso ? pk_image_load_vdso(&img, &err)
                : raw  ? pk_image_load_raw(&img, path, (unsigned)bits, base, &err)
                       : pk_image_load_file(&img, path, &err);
    if (s != PK_OK)
        return input_error(path, &err);
    if (symbols && pk_image_add_symbol_map(&img, symbols, &err) != PK_OK) {
        pk_image_free(&img);
        return input_error(path, &err);
    }

    bool progress = isatty(STDERR_FILENO);
    if (progress) {
        so.progress = show_progress;
        so.progress_ctx = (void *)path;
    }
    pk_scan scan;
    s = pk_scan_image(&img, &so, &scan, &err);
    if (progress)
        fputs("\r\033[K", stderr);
    if (s != PK_OK) {
        pk_image_free(&img);
        return input_error(path, &err);
    }
    s = pk_report_scan(stdout, &img, &scan, &ro, &err);
    pk_scan_free(&scan);
    pk_image_free(&img);
    if (s != PK_OK)
        return input_error(path, &err);
    return finish_output();
}

/* ---- explain --------------------------------------------------------------------------- */

static int cmd_explain(int argc, char **argv)
{
    enum { O_SET = 256, O_FORMAT };
    static const struct option opts[] = {
        { "set", required_argument, 0, O_SET },
        { "format", required_argument, 0, O_FORMAT },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    unsigned sets = PK_SET_ALL;
    pk_format format = PK_FORMAT_TEXT;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_explain, stdout);
            return 0;
        case O_SET:
            if (!pk_set_parse(optarg, &sets))
                return usage_error("--set: unknown set '%s'", optarg);
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "text")) format = PK_FORMAT_TEXT;
            else if (!strcmp(optarg, "markdown")) format = PK_FORMAT_MARKDOWN;
            else if (!strcmp(optarg, "json")) format = PK_FORMAT_JSON;
            else return usage_error("--format: '%s' is not text, markdown or json",
                                    optarg);
            break;
        default:
            return usage_error("explain: bad option");
        }
    }
    if (argc - optind > 1)
        return usage_error("explain: one ROW at a time");
    const pk_class *row = NULL;
    if (argc - optind == 1) {
        row = pk_class_find(argv[optind]);
        if (!row)
            return usage_error("explain: no catalog row '%s' (`popek explain` "
                                              "lists them)", argv[optind]);
        if (format == PK_FORMAT_MARKDOWN)
            return usage_error("explain: markdown is for the whole catalog");
    }
    pk_report_catalog(stdout, format, sets, row);
    return finish_output();
}

/* ---- extract --------------------------------------------------------------------------- */

/* Writes data to a temporary file beside path and renames it into place, so
 * that path is either untouched or complete. */
static int write_file_atomically(const char *path, const uint8_t *data, size_t len, mode_t mode)
{
    /* Renaming over a device or a symbolic link would replace it, not
     * write through it: refuse OUT that exists and is not a regular file. */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "popek: %s: exists and is not a regular file\n", path);
        return EXIT_BAD;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        fprintf(stderr, "popek: %s: path too long\n", path);
        return EXIT_BAD;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "popek: %s: %s\n", path, strerror(errno));
        return EXIT_BAD;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int e = errno;
    if (done < len || fchmod(fd, mode) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        fprintf(stderr, "popek: %s: %s\n", path, strerror(done < len ? e : errno));
        unlink(tmp);
        return EXIT_BAD;
    }
    return 0;
}

/* ---- patch ------------------------------------------------------------------------------ */

/* Loading a patched file checks every site against the table (the loader
 * refuses a table that does not match); what is left is to say so. */
static int cmd_verify(const char *path)
{
    pk_image img;
    pk_error err = { { 0 } };
    if (pk_image_load_file(&img, path, &err) != PK_OK)
        return input_error(path, &err);
    if (!img.is_patched) {
        pk_image_free(&img);
        fprintf(stderr, "popek: %s: not patched by popek (no popek note)\n", path);
        return EXIT_BAD;
    }
    pk_status s = pk_patch_verify(&img, &err);
    size_t count = img.patched.count, njumps = img.patched.njumps;
    pk_image_free(&img);
    if (s != PK_OK)
        return input_error(path, &err);
    printf("%s: %zu patches and %zu trampolines verified\n", path, count, njumps);
    return finish_output();
}

static int cmd_patch(int argc, char **argv)
{
    enum { O_SET = 256, O_ONLY, O_SYMBOLS, O_TACTIC, O_PASSTHROUGH, O_FAST_PATH, O_ALLOW_SKIP,
           O_REPORT, O_FORMAT, O_VERIFY };
    static const struct option opts[] = {
        { "output", required_argument, 0, 'o' },
        { "set", required_argument, 0, O_SET },
        { "only", required_argument, 0, O_ONLY },
        { "symbols", required_argument, 0, O_SYMBOLS },
        { "tactic", required_argument, 0, O_TACTIC },
        { "passthrough", no_argument, 0, O_PASSTHROUGH },
        { "fast-path", no_argument, 0, O_FAST_PATH },
        { "allow-skip", no_argument, 0, O_ALLOW_SKIP },
        { "report", no_argument, 0, O_REPORT },
        { "format", required_argument, 0, O_FORMAT },
        { "verify", no_argument, 0, O_VERIFY },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    pk_scan_options so = { .sets = PK_SET_PG, .flow = true };
    pk_plan_options po = { .tactic = PK_CHOOSE_AUTO };
    bool only[PK_CLASS_COUNT], report = false, json = false, verify = false, fast = false;
    const char *out = NULL, *symbols = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_patch, stdout);
            return 0;
        case 'o': out = optarg; break;
        case O_SET:
        case O_ONLY:
            if (filter_option(c == O_ONLY, optarg, &so, only))
                return EXIT_BAD;
            break;
        case O_SYMBOLS: symbols = optarg; break;
        case O_TACTIC:
            if (!strcmp(optarg, "auto")) po.tactic = PK_CHOOSE_AUTO;
            else if (!strcmp(optarg, "jmp")) po.tactic = PK_CHOOSE_JMP;
            else if (!strcmp(optarg, "int3")) po.tactic = PK_CHOOSE_INT3;
            else return usage_error("--tactic: '%s' is not auto, jmp or int3", optarg);
            break;
        case O_PASSTHROUGH: po.passthrough = true; break;
        case O_FAST_PATH: fast = true; break;
        case O_ALLOW_SKIP: po.allow_skip = true; break;
        case O_REPORT: report = true; break;
        case O_FORMAT:
            if (!strcmp(optarg, "text")) json = false;
            else if (!strcmp(optarg, "json")) json = true;
            else return usage_error("--format: '%s' is not text or json", optarg);
            break;
        case O_VERIFY: verify = true; break;
        default: return usage_error("patch: bad option");
        }
    }
    if (argc - optind != 1)
        return usage_error(argc - optind ? "patch: one file at a time" : "patch: no file given");
    const char *in = argv[optind];
    if (verify)
        return out ? usage_error("patch: --verify writes nothing; drop -o") : cmd_verify(in);
    if (!out)
        return usage_error("patch: -o OUT is required");
    if (po.passthrough && po.tactic == PK_CHOOSE_INT3)
        return usage_error("patch: --passthrough needs jumps, not --tactic int3");
    if (fast && (po.passthrough || po.tactic == PK_CHOOSE_INT3))
        return usage_error("patch: --fast-path lives in trampolines: not with %s",
                           po.passthrough ? "--passthrough" : "--tactic int3");
    po.only = so.only;

    pk_image img;
    pk_error err = { { 0 } };
    if (pk_image_load_file(&img, in, &err) != PK_OK)
        return input_error(in, &err);
    struct stat st;
    mode_t mode = stat(in, &st) == 0 ? st.st_mode & 07777 : 0755;
    pk_scan scan = { 0 };
    pk_flow flow = { 0 };
    pk_plan plan = { 0 };
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t code_vaddr = 0;
    pk_status s = symbols ? pk_image_add_symbol_map(&img, symbols, &err) : PK_OK;
    if (s == PK_OK && img.is_patched)
        s = pk_fail(&err, PK_ERR_UNSUPPORTED, "already patched by popek (%zu patches)",
                    img.patched.count);
    if (s == PK_OK && img.kind != PK_IMAGE_ELF)
        s = pk_fail(&err, PK_ERR_UNSUPPORTED,
                    "only ELF files can be patched (a bzImage: popek extract it first)");
    if (s == PK_OK)
        s = pk_elf_code_vaddr(img.data, img.data_len, fast, &code_vaddr, &po.vcpu_page, &err);
    bool progress = isatty(STDERR_FILENO);
    if (progress) {
        so.progress = show_progress;
        so.progress_ctx = (void *)in;
    }
    if (s == PK_OK)
        s = pk_scan_image(&img, &so, &scan, &err);
    if (progress)
        fprintf(stderr, "\r\033[Kpopek: planning %zu sites\r", scan.nsites);
    if (s == PK_OK && po.tactic != PK_CHOOSE_INT3)
        s = pk_flow_build(&img, &flow, &err);
    if (s == PK_OK)
        s = pk_patch_plan(&img, &scan, &flow, code_vaddr, &po, &plan, &err);
    if (s == PK_OK)
        s = pk_patch_write_elf(&img, &plan, &data, &len, &err);
    if (progress)
        fputs("\r\033[K", stderr);
    int rc = s == PK_OK ? write_file_atomically(out, data, len, mode) : input_error(in, &err);

    if (!rc) {
        pk_report_patch(stdout, &img, &plan, json ? PK_FORMAT_JSON : PK_FORMAT_TEXT, report,
                        out);
        size_t jumped = 0;
        for (size_t i = 0; i < plan.table.count; i++)
            jumped += plan.table.patches[i].tactic != PK_TACTIC_INT3;
        fprintf(stderr, "popek: %s: %zu sites patched (%zu by jump), %zu %s, written to %s\n",
                in, plan.table.count, jumped, plan.nskips,
                po.passthrough ? "left as they were" : "skipped", out);
        rc = finish_output();
    }
    free(data);
    pk_plan_free(&plan);
    pk_flow_free(&flow);
    pk_scan_free(&scan);
    pk_image_free(&img);
    return rc;
}

static int cmd_extract(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, 0, 'o' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *out = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_extract, stdout);
            return 0;
        case 'o': out = optarg; break;
        default: return usage_error("extract: bad option");
        }
    }
    if (argc - optind != 1)
        return usage_error("extract: give one BZIMAGE");
    if (!out)
        return usage_error("extract: -o OUT is required");
    const char *path = argv[optind];

    /* Load it as an image: that reads, recognises and decompresses it, and
     * checks the payload is an x86 ELF. */
    pk_image img;
    pk_error err = { { 0 } };
    if (pk_image_load_file(&img, path, &err) != PK_OK)
        return input_error(path, &err);
    if (img.kind != PK_IMAGE_BZIMAGE) {
        pk_image_free(&img);
        fprintf(stderr, "popek: %s: not a bzImage\n", path);
        return EXIT_BAD;
    }
    int rc = write_file_atomically(out, img.data, img.data_len, 0644);
    if (!rc)
        fprintf(stderr, "popek: %s: %s payload, %zu bytes written to %s\n", path,
                img.compression, img.data_len, out);
    pk_image_free(&img);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("no command given");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("popek %s (Zydis %u.%u)\n", POPEK_VERSION,
               (unsigned)ZYDIS_VERSION_MAJOR(ZydisGetVersion()),
               (unsigned)ZYDIS_VERSION_MINOR(ZydisGetVersion()));
        return 0;
    }
    if (!strcmp(cmd, "scan"))
        return cmd_scan(argc - 1, argv + 1);
    if (!strcmp(cmd, "explain"))
        return cmd_explain(argc - 1, argv + 1);
    if (!strcmp(cmd, "extract"))
        return cmd_extract(argc - 1, argv + 1);
    if (!strcmp(cmd, "patch"))
        return cmd_patch(argc - 1, argv + 1);
    if (!strcmp(cmd, "boot"))
        return cmd_boot(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    return usage_error("unknown command '%s'", cmd);
}
