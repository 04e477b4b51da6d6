/* popek — unit tests: growing real ELF files by one segment. The grown
 * files must run exactly as the originals (no patched site runs), and carry
 * the patch table where a reader finds it through the program headers. */
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gelf.h>

#include "popek/elfgrow.h"
#include "popek/popek.h"

#include "helpers.h"

/* Runs path with argv (argv[0] included) and returns its stdout; *status
 * gets the exit status. The child execs at once (Criterion and fork). */
static char *run(const char *path, char *const argv[], int *status)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (!pid) {
        dup2(fds[1], 1);
        close(fds[0]);
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
        fwrite(chunk, 1, (size_t)n, out);
    fclose(out);
    close(fds[0]);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return buf;
}

/* The dynamic loader and static programs find their own program headers at
 * load base + e_phoff (__ehdr_start + e_phoff): the moved table must be
 * mapped exactly there. */
static void expect_headers_at_ehdr_plus_phoff(const pk_elf_growth *g)
{
    Elf *elf = elf_memory((char *)g->data, g->len);
    cr_assert_not_null(elf);
    GElf_Ehdr eh;
    cr_assert_not_null(gelf_getehdr(elf, &eh));
    size_t phnum;
    cr_assert_eq(elf_getphdrnum(elf, &phnum), 0);
    uint64_t base = 0, table_vaddr = 0;
    bool have_base = false, mapped = false;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        cr_assert_not_null(gelf_getphdr(elf, (int)i, &ph));
        if (ph.p_type == PT_LOAD && !have_base) {
            base = ph.p_vaddr - ph.p_offset;
            have_base = true;
        }
        if (ph.p_type == PT_LOAD && eh.e_phoff >= ph.p_offset &&
            eh.e_phoff + phnum * eh.e_phentsize <= ph.p_offset + ph.p_filesz) {
            table_vaddr = ph.p_vaddr + (eh.e_phoff - ph.p_offset);
            mapped = true;
        }
    }
    cr_assert(mapped, "the moved program headers are not in a PT_LOAD");
    cr_assert_eq(table_vaddr, base + eh.e_phoff);
    elf_end(elf);
}

/* The vcpu page of g: a whole page of address space that no segment
 * maps, above every other segment and below the new one. */
static void expect_vcpu_page(const pk_elf_growth *g, uint64_t page)
{
    Elf *elf = elf_memory((char *)g->data, g->len);
    size_t phnum;
    cr_assert_eq(elf_getphdrnum(elf, &phnum), 0);
    cr_assert_eq(page % 4096, 0);
    cr_assert_leq(page + 4096, g->segment_vaddr, "the page is below the new segment");
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        cr_assert_not_null(gelf_getphdr(elf, (int)i, &ph));
        if (ph.p_type == PT_LOAD && ph.p_vaddr < page + 4096)
            cr_assert_leq(ph.p_vaddr + ph.p_memsz, page, "a segment reaches into the page");
    }
    elf_end(elf);
}

/* Grows path with a one-patch table (and, with vcpu_page, the page),
 * checks the table comes back, and runs both files with argv: same output,
 * same status. */
static void grow_and_run_once(const char *path, char *const argv[], bool vcpu_page)
{
    size_t len;
    uint8_t *in = slurp(path, &len);
    pk_patch p = { .site = 0x1000, .len = 1, .bytes = { 0x9c }, .cls = PK_CLASS_PUSHF,
                   .tactic = PK_TACTIC_INT3 };
    pk_patch_table t = { .bits = 64, .patches = &p, .count = 1 };
    uint8_t *table;
    size_t table_len;
    pk_error err;
    cr_assert_eq(pk_patch_table_encode(&t, &table, &table_len, &err), PK_OK);
    uint8_t code[4096];
    for (size_t i = 0; i < sizeof code; i++)
        code[i] = (uint8_t)i;
    uint64_t code_vaddr, page;
    cr_assert_eq(pk_elf_code_vaddr(in, len, vcpu_page, &code_vaddr, &page, &err), PK_OK, "%s",
                 err.msg);
    pk_elf_growth g;
    cr_assert_eq(pk_elf_grow(in, len, table, table_len, code, sizeof code, vcpu_page, &g, &err),
                 PK_OK, "%s: %s", path, err.msg);
    cr_assert_eq(g.code_vaddr, code_vaddr, "%s: code where pk_elf_code_vaddr said", path);
    cr_assert_eq(g.vcpu_page, page, "%s: the page where pk_elf_code_vaddr said", path);
    if (vcpu_page)
        expect_vcpu_page(&g, page);
    else
        cr_assert_eq(page, 0);
    /* Every original byte but the ELF header's table fields is unchanged. */
    size_t ehsize = in[4] == ELFCLASS64 ? 64 : 52;
    cr_assert_eq(memcmp(g.data + ehsize, in + ehsize, len - ehsize), 0, "%s", path);

    const uint8_t *desc;
    size_t desc_len;
    cr_assert(pk_elf_find_note(g.data, g.len, &desc, &desc_len), "%s: no note", path);
    pk_patch_table back;
    cr_assert_eq(pk_patch_table_decode(desc, desc_len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.count, 1);
    cr_assert_eq(back.patches[0].cls, PK_CLASS_PUSHF);
    pk_patch_table_free(&back);
    cr_assert_eq(g.code_offset + sizeof code <= g.len, true);
    expect_headers_at_ehdr_plus_phoff(&g);
    cr_assert_eq(memcmp(g.data + g.code_offset, code, sizeof code), 0);

    /* The grown file loads and runs as the original does. */
    char grown[] = "/tmp/popek-grown-XXXXXX";
    int fd = mkstemp(grown);
    cr_assert_eq(write(fd, g.data, g.len), (ssize_t)g.len);
    fchmod(fd, 0755);
    close(fd);
    int want_status, got_status;
    char *want = run(path, argv, &want_status);
    char *got = run(grown, argv, &got_status);
    unlink(grown);
    cr_assert_eq(got_status, want_status, "%s: status %d, original %d", path, got_status,
                 want_status);
    cr_assert_str_eq(got, want, "%s", path);
    free(want);
    free(got);
    free(g.data);
    free(table);
    free(in);
}

static void grow_and_run(const char *path, char *const argv[])
{
    grow_and_run_once(path, argv, false);
    grow_and_run_once(path, argv, true);
}

Test(elfgrow, pie_executables_run_as_before)
{
    grow_and_run("/bin/true", (char *[]){ "true", NULL });
    grow_and_run("/bin/false", (char *[]){ "false", NULL });
    grow_and_run("/bin/ls", (char *[]){ "ls", "-la", "/usr/include/Zydis", NULL });
}

Test(elfgrow, shared_objects_run_as_before)
{
    /* glibc's libc.so.6 and the dynamic loader are executable too. */
    grow_and_run("/lib/x86_64-linux-gnu/libc.so.6", (char *[]){ "libc.so.6", NULL });
    grow_and_run("/lib64/ld-linux-x86-64.so.2",
                 (char *[]){ "ld.so", "--version", NULL });
}

Test(elfgrow, loader_with_trailing_bytes_runs_as_before)
{
    /* A loader whose file is longer than its segments (as an unstripped one
     * is) finds its headers through __ehdr_start + e_phoff. */
    size_t len;
    uint8_t *in = slurp("/lib64/ld-linux-x86-64.so.2", &len);
    char padded[] = "/tmp/popek-ldpad-XXXXXX";
    int fd = mkstemp(padded);
    cr_assert_eq(write(fd, in, len), (ssize_t)len);
    static const uint8_t zeros[100000];
    cr_assert_eq(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    fchmod(fd, 0755);
    close(fd);
    free(in);
    grow_and_run(padded, (char *[]){ "ld.so", "--version", NULL });
    unlink(padded);
}

Test(elfgrow, elf32_runs_as_before)
{
    /* Debian's libc6-i386 (installed with gcc-multilib). */
    grow_and_run("/usr/lib32/libc.so.6", (char *[]){ "libc.so.6", NULL });
}

Test(elfgrow, refuses_what_it_cannot_grow)
{
    static const uint8_t junk[64] = { 0x7f, 'E', 'L', 'F' };
    pk_elf_growth g;
    pk_error err;
    cr_assert_neq(pk_elf_grow(junk, sizeof junk, NULL, 0, NULL, 0, false, &g, &err), PK_OK);
    cr_assert_null(g.data);
    size_t len;
    uint8_t *in = slurp("/bin/true", &len);
    in[18] = 183; /* aarch64 */
    cr_assert_eq(pk_elf_grow(in, len, NULL, 0, NULL, 0, false, &g, &err), PK_ERR_UNSUPPORTED);
    free(in);
}

Test(elfgrow, added_code_segment_is_not_scanned_as_the_programs_code)
{
    /* Without section headers code regions are the executable segments; the
     * one popek added (headers, table, trampolines) must not be among them. */
    size_t len;
    uint8_t *in = slurp("/bin/true", &len);
    memset(in + 0x28, 0, 8);  /* e_shoff */
    memset(in + 0x3c, 0, 4);  /* e_shnum, e_shstrndx */
    pk_patch_table t = { .bits = 64 };
    uint8_t *table;
    size_t table_len;
    pk_error err;
    cr_assert_eq(pk_patch_table_encode(&t, &table, &table_len, &err), PK_OK);
    uint8_t code[4096];
    memset(code, 0xCC, sizeof code);
    pk_elf_growth g;
    cr_assert_eq(pk_elf_grow(in, len, table, table_len, code, sizeof code, false, &g, &err), PK_OK,
                 "%s", err.msg);
    pk_image before, after;
    cr_assert_eq(pk_image_load_elf_memory(&before, in, len, "true", &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_image_load_elf_memory(&after, g.data, g.len, "grown", &err), PK_OK, "%s",
                 err.msg);
    cr_assert(after.is_patched);
    cr_assert_eq(after.nregions, before.nregions);
    for (size_t i = 0; i < after.nregions; i++)
        cr_assert_eq(after.regions[i].vaddr, before.regions[i].vaddr);
    pk_image_free(&before);
    pk_image_free(&after);
    free(g.data);
    free(table);
    free(in);
}
