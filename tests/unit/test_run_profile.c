/* popek — unit tests for the virtual CPU profile of `popek run`
 * (pk_run_profile_default, pk_run_profile_load) and pk_elf_build_id.
 *
 * The default values are Linux's UMIP fakes as REFERENCE.md §3 gives them
 * (arch/x86/kernel/umip.c): GDT 0xfffffffffffe0000, IDT 0xffffffffffff0000,
 * limits 0, CR0 0x80050033, TR GDT_ENTRY_TSS * 8 = 0x40, LDTR
 * GDT_ENTRY_LDT * 8 = 0x50 once the process has an LDT. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "popek/image.h"
#include "popek/run.h"

static char path[64];

/* A profile file holding text; its name is in path. */
static void profile_file(const char *text)
{
    snprintf(path, sizeof path, "/tmp/popek-profile-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void cleanup(void)
{
    if (path[0])
        unlink(path);
    path[0] = 0;
}

TestSuite(run_profile, .fini = cleanup);

Test(run_profile, default_is_linux_umip)
{
    pk_run_profile p;
    memset(&p, 0xa5, sizeof p);
    pk_run_profile_default(&p);
    cr_assert_eq(p.gdt_base, 0xfffffffffffe0000ull);
    cr_assert_eq(p.idt_base, 0xffffffffffff0000ull);
    cr_assert_eq(p.gdt_limit, 0);
    cr_assert_eq(p.idt_limit, 0);
    cr_assert_eq(p.cr0, 0x80050033u);
    cr_assert_eq(p.tr, 0x40);
    cr_assert_eq(p.ldtr, 0x50);
    cr_assert(!p.ldtr_always);
}

Test(run_profile, load_sets_named_keys_only)
{
    profile_file("# bare metal\n"
                 "\n"
                 "idt_base = 0xffffffff80001000   # the kernel's\n"
                 "  idt_limit=4095\n"
                 "cr0 = 0x11\n");
    pk_run_profile p;
    pk_run_profile_default(&p);
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, path, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(p.idt_base, 0xffffffff80001000ull);
    cr_assert_eq(p.idt_limit, 4095);
    cr_assert_eq(p.cr0, 0x11);
    /* the rest as they were */
    cr_assert_eq(p.gdt_base, 0xfffffffffffe0000ull);
    cr_assert_eq(p.tr, 0x40);
    cr_assert(!p.ldtr_always);
}

Test(run_profile, ldtr_shows_always)
{
    profile_file("ldtr = 0x28\ntr = 0x30\ngdt_limit = 0x7f\ngdt_base = 0x1000\n");
    pk_run_profile p;
    pk_run_profile_default(&p);
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, path, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(p.ldtr, 0x28);
    cr_assert(p.ldtr_always);
    cr_assert_eq(p.tr, 0x30);
    cr_assert_eq(p.gdt_limit, 0x7f);
    cr_assert_eq(p.gdt_base, 0x1000);
}

Test(run_profile, long_comment_lines)
{
    char text[1200];
    snprintf(text, sizeof text, "# %0600d tsc_aux = 9\ntr = 0x18 # %0400d\n", 0, 0);
    profile_file(text);
    pk_run_profile p;
    pk_run_profile_default(&p);
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, path, &err), PK_OK, "%s", err.msg);
    cr_assert(!p.tsc_aux_set, "a key inside a comment");
    cr_assert_eq(p.tr, 0x18);
}

Test(run_profile, cpuid_and_tsc)
{
    profile_file("cpuid.0x40000000 = 1 2 3 0xffffffff\n"
                 "cpuid.7.1 = 0 0x10 0 0   # subleaf 1 only\n"
                 "cpuid.0x40000000 = 5 6 7 8   # again: the later values\n"
                 "tsc = 0x10000000000\n"
                 "tsc_aux = 9\n");
    pk_run_profile p;
    pk_run_profile_default(&p);
    cr_assert(!p.tsc_set && !p.tsc_aux_set && p.ncpuid == 0);
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, path, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(p.ncpuid, 2);
    cr_assert_eq(p.cpuid[0].leaf, 0x40000000u);
    cr_assert(p.cpuid[0].any_subleaf);
    cr_assert_eq(p.cpuid[0].eax, 5);
    cr_assert_eq(p.cpuid[0].edx, 8);
    cr_assert_eq(p.cpuid[1].leaf, 7);
    cr_assert_eq(p.cpuid[1].subleaf, 1);
    cr_assert(!p.cpuid[1].any_subleaf);
    cr_assert_eq(p.cpuid[1].ebx, 0x10);
    cr_assert(p.tsc_set);
    cr_assert_eq(p.tsc, 1ull << 40);
    cr_assert(p.tsc_aux_set);
    cr_assert_eq(p.tsc_aux, 9);
}

static void load_fails(const char *text, pk_status want, const char *says)
{
    profile_file(text);
    pk_run_profile p;
    pk_run_profile_default(&p);
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, path, &err), want, "%s: %s", text, err.msg);
    cr_assert(strstr(err.msg, says), "%s: '%s' has no '%s'", text, err.msg, says);
    cleanup();
}

Test(run_profile, bad_files)
{
    load_fails("cr0 = zero\n", PK_ERR_FORMAT, "line 1");
    load_fails("\n\ntr = 0x10000\n", PK_ERR_FORMAT, "line 3: expected tr = NUMBER (16 bits)");
    load_fails("cr3 = 0\n", PK_ERR_FORMAT, "no key 'cr3'");
    load_fails("cr0 = 1 2\n", PK_ERR_FORMAT, "line 1");
    load_fails("cr0 = -1\n", PK_ERR_FORMAT, "line 1");
    load_fails("cr0\n", PK_ERR_FORMAT, "line 1");
    load_fails("cpuid.1 = 1 2 3\n", PK_ERR_FORMAT, "line 1: expected cpuid.LEAF");
    load_fails("cpuid.1 = 1 2 3 4 5\n", PK_ERR_FORMAT, "line 1: expected cpuid.LEAF");
    load_fails("cpuid.1 = 1 2 3 0x100000000\n", PK_ERR_FORMAT, "line 1: expected cpuid.LEAF");
    load_fails("cpuid.x = 1 2 3 4\n", PK_ERR_FORMAT, "line 1: expected cpuid.LEAF");
    load_fails("tsc = \v-1\n", PK_ERR_FORMAT, "line 1: expected tsc = NUMBER");
    load_fails("tsc_aux = 0x100000000\n", PK_ERR_FORMAT, "line 1: expected tsc_aux = NUMBER (32 bits)");
    pk_run_profile p;
    pk_error err = { { 0 } };
    cr_assert_eq(pk_run_profile_load(&p, "/nonexistent/profile", &err), PK_ERR_IO);
}

Test(elf_build_id, reads_the_note)
{
    /* Debian links /bin/true with a 20-byte (SHA-1) build id. A file
     * that is no ELF file has none. */
    uint8_t id[64];
    size_t n = pk_elf_build_id("/bin/true", id, sizeof id);
    cr_assert_eq(n, 20, "SHA-1 build id of /bin/true: %zu bytes", n);
    profile_file("not an elf");
    cr_assert_eq(pk_elf_build_id(path, id, sizeof id), 0);
    cr_assert_eq(pk_elf_build_id("/nonexistent", id, sizeof id), 0);
    cr_assert_eq(pk_elf_build_id("/bin/true", id, 4), 0, "does not fit");
}
