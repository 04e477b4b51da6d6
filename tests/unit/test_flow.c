/* popek — unit tests: control-flow facts from files (flow.h). Each source
 * is proved on an ELF file built here with gcc, stripped where symbols
 * would name the same addresses, so that only the source under test can
 * have found them. */
#include <criterion/criterion.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "popek/flow.h"
#include "popek/popek.h"

#include "helpers.h"

static char dir[] = "/tmp/popek-flow-XXXXXX";

static void make_dir(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(flow, .init = make_dir, .fini = remove_dir);

/* Writes src to dir/name.ext, builds it with gcc and flags into dir/name
 * and writes a stripped copy to dir/name.stripped; returns dir/name. */
static const char *build(const char *name, const char *ext, const char *src, const char *flags)
{
    static char path[256];
    char file[300], cmd[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(file, sizeof file, "%s.%s", path, ext);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "gcc %s -o %s %s && strip -o %s.stripped %s", flags, path, file,
             path, path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    return path;
}

static char *stripped(const char *path)
{
    static char s[300];
    snprintf(s, sizeof s, "%s.stripped", path);
    return s;
}

/* The address of the symbol name in the (unstripped) file at path. */
static uint64_t symbol(const char *path, const char *name)
{
    pk_image img;
    pk_error err;
    cr_assert_eq(pk_image_load_file(&img, path, &err), PK_OK, "%s", err.msg);
    for (size_t i = 0; i < img.nsymbols; i++) {
        if (!strcmp(img.symbols[i].name, name)) {
            uint64_t a = img.symbols[i].addr;
            pk_image_free(&img);
            return a;
        }
    }
    cr_assert_fail("no symbol %s in %s", name, path);
    return 0;
}

static void load_flow(const char *path, pk_image *img, pk_flow *flow)
{
    pk_error err;
    cr_assert_eq(pk_image_load_file(img, path, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(img, flow, &err), PK_OK, "%s", err.msg);
}

/* The section of the ELF image buf holding vaddr (or, with name, called
 * name): its file offset and size. */
static GElf_Shdr section(const uint8_t *buf, size_t len, uint64_t vaddr, const char *name)
{
    elf_version(EV_CURRENT);
    Elf *elf = elf_memory((char *)buf, len);
    size_t shstrndx;
    cr_assert(elf && !elf_getshdrstrndx(elf, &shstrndx));
    Elf_Scn *scn = NULL;
    GElf_Shdr sh;
    while ((scn = elf_nextscn(elf, scn))) {
        gelf_getshdr(scn, &sh);
        if (name ? !strcmp(elf_strptr(elf, shstrndx, sh.sh_name), name)
                 : sh.sh_type != SHT_NOBITS && vaddr - sh.sh_addr < sh.sh_size && sh.sh_addr) {
            elf_end(elf);
            return sh;
        }
    }
    cr_assert_fail("no section %s", name ? name : "at that address");
    return sh;
}

/* ---- targets ---------------------------------------------------------------- */

/* hidden is named only by the pointer hook holds. */
static const char hook_c[] =
    "static int __attribute__((noinline)) hidden(int x) { return x * 3; }\n"
    "int (*volatile hook)(int) = hidden;\n"
    "int main(void) { return hook(1) != 3; }\n";

Test(flow, function_pointer_in_data_is_a_target)
{
    const char *path = build("hook", "c", hook_c, "-O1 -fno-pie -no-pie");
    uint64_t hidden = symbol(path, "hidden");
    pk_image img;
    pk_flow flow;
    load_flow(stripped(path), &img, &flow);
    cr_assert_null(pk_image_symbol_at(&img, NULL, hidden), "stripped: no symbol names it");
    cr_assert(pk_flow_has_target(&flow, hidden, hidden + 1));
    cr_assert_geq(flow.from.data_pointers, 1);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

/* Zeroes the pointer hook holds in the stripped PIE at path, so that only
 * a relocation can name hidden, and builds its flow. */
static void flow_without_the_pointer(const char *path, pk_image *img, pk_flow *flow)
{
    uint64_t hook = symbol(path, "hook");
    size_t len;
    uint8_t *buf = slurp(stripped(path), &len);
    GElf_Shdr sh = section(buf, len, hook, NULL);
    memset(buf + sh.sh_offset + (hook - sh.sh_addr), 0, 8);
    pk_error err;
    cr_assert_eq(pk_image_load_elf_memory(img, buf, len, "pie", &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(img, flow, &err), PK_OK, "%s", err.msg);
    free(buf);
}

Test(flow, relative_relocation_in_a_pie_is_a_target)
{
    const char *path = build("pie", "c", hook_c, "-O1 -fpie -pie");
    uint64_t hidden = symbol(path, "hidden");
    pk_image img;
    pk_flow flow;
    flow_without_the_pointer(path, &img, &flow);
    cr_assert(pk_flow_has_target(&flow, hidden, hidden + 1));
    cr_assert_geq(flow.from.relocations, 1);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

/* The same PIE with its relative relocations packed: RELR names the
 * places, each holding its addend. */
Test(flow, packed_relative_relocations_name_the_same_targets)
{
    pk_image img;
    pk_flow rela, relr;
    load_flow(stripped(build("rela", "c", hook_c, "-O1 -fpie -pie")), &img, &rela);
    pk_image_free(&img);
    const char *path = build("relr", "c", hook_c, "-O1 -fpie -pie -Wl,-z,pack-relative-relocs");
    uint64_t hidden = symbol(path, "hidden");
    size_t len;
    uint8_t *buf = slurp(path, &len);
    cr_assert_eq(section(buf, len, 0, ".relr.dyn").sh_type, SHT_RELR, "the linker packed them");
    free(buf);
    load_flow(stripped(path), &img, &relr);
    cr_assert(pk_flow_has_target(&relr, hidden, hidden + 1));
    cr_assert_geq(relr.from.relocations, 3, "hook, .init_array, .fini_array");
    cr_assert_eq(relr.from.relocations, rela.from.relocations);
    pk_flow_free(&rela);
    pk_flow_free(&relr);
    pk_image_free(&img);
}

Test(flow, implicit_addend_of_a_32_bit_pie_is_a_target)
{
    const char *path = build("pie32", "c", hook_c, "-m32 -O1 -fpie -pie");
    uint64_t hidden = symbol(path, "hidden");
    pk_image img;
    pk_flow flow;
    load_flow(stripped(path), &img, &flow);
    cr_assert(pk_flow_has_target(&flow, hidden, hidden + 1));
    cr_assert_geq(flow.from.relocations, 1);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

/* ---- exception tables ----------------------------------------------------------- */

/* f1's LSDA: LPStart omitted (f1 itself), call sites in uleb128. f2's:
 * LPStart pcrel sdata4 (f2_base), a type table to skip, call sites in
 * udata4, one without a pad. f3's call sites have an encoding that does
 * not exist. f4's CIE and FDEs are written by hand: its LSDA pointer,
 * pcrel, holds zero, which (as in libgcc) means none; a second FDE
 * overlaps it by 2 bytes past its end (they merge), a third names data. f5's LPStart, pcrel, holds
 * zero too: its landing pads are absolute. pers, the personality routine,
 * has no FDE. */
static const char eh_s[] =
    "    .text\n"
    "    .globl _start, f1, f1_pad, f1_end, f2, f2_base, f2_pad, f2_end\n"
    "    .globl f3, f3_pad, f3_end, f4, f4_end, f5, f5_pad, pers\n"
    "_start:\n"
    "    .cfi_startproc\n"
    "    call f1; call f2; call f3\n"
    "    mov $60, %eax; xor %edi, %edi; syscall\n"
    "    .cfi_endproc\n"
    "    .p2align 6, 0xcc\n"
    "f1: .cfi_startproc\n"
    "    .cfi_personality 0x1b, pers\n"
    "    .cfi_lsda 0x1b, .Llsda1\n"
    "    nop\n"
    ".Lcs1: call pers\n"
    ".Lcs1_end: ret\n"
    "f1_pad: ret\n"
    "    .cfi_endproc\n"
    "f1_end:\n"
    "    .p2align 6, 0xcc\n"
    "f2: .cfi_startproc\n"
    "    .cfi_personality 0x1b, pers\n"
    "    .cfi_lsda 0x1b, .Llsda2\n"
    "    nop; nop\n"
    "f2_base: nop\n"
    ".Lcs2: call pers\n"
    ".Lcs2_end: call pers\n"
    ".Lcs3_end: ret\n"
    "f2_pad: ret\n"
    "    .cfi_endproc\n"
    "f2_end:\n"
    "    .p2align 6, 0xcc\n"
    "f3: .cfi_startproc\n"
    "    .cfi_personality 0x1b, pers\n"
    "    .cfi_lsda 0x1b, .Llsda3\n"
    "    call pers\n"
    "    ret\n"
    "f3_pad: ret\n"
    "    .cfi_endproc\n"
    "f3_end:\n"
    "    .p2align 6, 0xcc\n"
    "f5: .cfi_startproc\n"
    "    .cfi_personality 0x1b, pers\n"
    "    .cfi_lsda 0x1b, .Llsda5\n"
    ".Lcs5: call pers\n"
    ".Lcs5_end: ret\n"
    "f5_pad: ret\n"
    "    .cfi_endproc\n"
    "    .p2align 6, 0xcc\n"
    "f4: call pers\n"
    "    ret\n"
    "f4_end:\n"
    "    .p2align 6, 0xcc\n"
    "pers: ret\n"
    "    .type pers, @function\n"
    "    .size pers, 1\n"
    "    .section .gcc_except_table,\"a\",@progbits\n"
    ".Llsda1:\n"
    "    .byte 0xff, 0xff, 0x01\n"
    "    .uleb128 .Lcst1_end - .Lcst1\n"
    ".Lcst1:\n"
    "    .uleb128 .Lcs1 - f1, .Lcs1_end - .Lcs1, f1_pad - f1, 0\n"
    ".Lcst1_end:\n"
    ".Llsda2:\n"
    "    .byte 0x1b\n"
    "    .long f2_base - .\n"
    "    .byte 0x9b\n"
    "    .uleb128 300\n"
    "    .byte 0x03\n"
    "    .uleb128 .Lcst2_end - .Lcst2\n"
    ".Lcst2:\n"
    "    .long .Lcs2 - f2_base, .Lcs2_end - .Lcs2, f2_pad - f2_base\n"
    "    .uleb128 1\n"
    "    .long .Lcs2_end - f2_base, .Lcs3_end - .Lcs2_end, 0\n"
    "    .uleb128 0\n"
    ".Lcst2_end:\n"
    ".Llsda3:\n"
    "    .byte 0xff, 0xff, 0x05\n"
    "    .uleb128 4\n"
    "    .long 0\n"
    ".Llsda5:\n"
    "    .byte 0x1b\n"
    "    .long 0\n"
    "    .byte 0xff, 0x03\n"
    "    .uleb128 13\n"
    "    .long .Lcs5 - f5, .Lcs5_end - .Lcs5, f5_pad\n"
    "    .uleb128 0\n"
    "    .section .eh_frame,\"a\",@unwind\n"
    ".Lcie: .long .Lcie_end - .Lcie_id\n"
    ".Lcie_id: .long 0\n"
    "    .byte 1\n"
    "    .asciz \"zLR\"\n"
    "    .uleb128 1\n"
    "    .sleb128 -8\n"
    "    .byte 16\n"
    "    .uleb128 2\n"
    "    .byte 0x1b, 0x1b\n"
    "    .balign 4, 0\n"
    ".Lcie_end: .long .Lfde_end - .Lfde_id\n"
    ".Lfde_id: .long .Lfde_id - .Lcie\n"
    "    .long f4 - ., f4_end - f4\n"
    "    .uleb128 4\n"
    "    .long 0\n"
    "    .balign 4, 0\n"
    ".Lfde_end: .long .Lfde2_end - .Lfde2_id\n"
    ".Lfde2_id: .long .Lfde2_id - .Lcie\n"
    "    .long f4 + 2 - ., f4_end + 2 - f4\n"
    "    .uleb128 4\n"
    "    .long 0\n"
    "    .balign 4, 0\n"
    ".Lfde2_end: .long .Lfde3_end - .Lfde3_id\n"
    ".Lfde3_id: .long .Lfde3_id - .Lcie\n"
    "    .long .Llsda1 - ., 4\n"
    "    .uleb128 4\n"
    "    .long 0\n"
    "    .balign 4, 0\n"
    ".Lfde3_end:\n";

#define EH_FLAGS "-nostdlib -static -no-pie"

Test(flow, landing_pads_of_hand_written_lsdas)
{
    const char *path = build("eh", "s", eh_s, EH_FLAGS);
    uint64_t f1 = symbol(path, "f1"), f1_pad = symbol(path, "f1_pad");
    uint64_t f2 = symbol(path, "f2"), f2_pad = symbol(path, "f2_pad");
    uint64_t f3 = symbol(path, "f3"), f3_pad = symbol(path, "f3_pad");
    uint64_t f3_end = symbol(path, "f3_end"), pers = symbol(path, "pers");
    uint64_t f4 = symbol(path, "f4"), f4_end = symbol(path, "f4_end");
    uint64_t f5_pad = symbol(path, "f5_pad");
    pk_image img;
    pk_flow flow;
    load_flow(stripped(path), &img, &flow);
    cr_assert(pk_flow_has_target(&flow, f1_pad, f1_pad + 1));
    cr_assert(pk_flow_has_target(&flow, f2_pad, f2_pad + 1));
    cr_assert(pk_flow_has_target(&flow, f5_pad, f5_pad + 1), "from an LPStart of zero");
    cr_assert(pk_flow_has_target(&flow, pers, pers + 1), "the personality routine");
    cr_assert(pk_flow_has_target(&flow, f1, f1 + 1), "a function start from its FDE");
    cr_assert_not(pk_flow_has_target(&flow, f1 + 1, f1_pad), "nothing else in f1");
    cr_assert_not(pk_flow_has_target(&flow, f2 + 1, f2_pad), "nor in f2: no pad at f2_base");
    cr_assert_geq(flow.from.landing_pads, 3);
    /* f3's LSDA cannot be read: nothing from it, and all of f3 pinned. */
    cr_assert_not(pk_flow_has_target(&flow, f3 + 1, f3_end));
    cr_assert_not(pk_flow_has_target(&flow, f3_pad, f3_pad + 1));
    cr_assert_eq(flow.npinned, 1);
    cr_assert_eq(flow.pinned[0].lo, f3);
    cr_assert_eq(flow.pinned[0].hi, f3_end);
    /* f4's zero is no LSDA: nothing to read, nothing pinned. */
    cr_assert_not(pk_flow_has_target(&flow, f4 + 1, f4 + 2));
    cr_assert(pk_flow_has_target(&flow, f4 + 2, f4 + 3), "the second FDE's start");
    cr_assert_not(pk_flow_has_target(&flow, f4 + 3, f4_end));
    pk_flow_free(&flow);
    pk_image_free(&img);
}

Test(flow, fde_ranges_are_functions_and_symbols_fill_gaps)
{
    const char *path = build("eh", "s", eh_s, EH_FLAGS);
    uint64_t f1 = symbol(path, "f1"), f1_end = symbol(path, "f1_end");
    uint64_t f2 = symbol(path, "f2"), pers = symbol(path, "pers");
    uint64_t f4 = symbol(path, "f4"), f4_end = symbol(path, "f4_end");
    pk_image img;
    pk_flow flow;
    pk_range fn;
    load_flow(stripped(path), &img, &flow);
    cr_assert_eq(flow.nfunctions, 6, "_start, f1, f2, f3, f5, f4");
    cr_assert(pk_flow_function_at(&flow, f1_end - 1, &fn));
    cr_assert_eq(fn.lo, f1);
    cr_assert_eq(fn.hi, f1_end);
    cr_assert_not(pk_flow_function_at(&flow, f1_end, NULL), "the padding after f1");
    cr_assert(pk_flow_function_at(&flow, f2, NULL));
    cr_assert(pk_flow_function_at(&flow, f4, &fn), "a CIE and FDEs written by hand");
    cr_assert_eq(fn.lo, f4);
    cr_assert_eq(fn.hi, f4_end + 4, "overlapping FDEs merge");
    cr_assert_not(pk_flow_function_at(&flow, pers, NULL), "no FDE, no symbol");
    pk_flow_free(&flow);
    pk_image_free(&img);

    load_flow(path, &img, &flow);
    cr_assert_eq(flow.nfunctions, 7, "pers's sized symbol fills a gap");
    cr_assert(pk_flow_function_at(&flow, pers, &fn));
    cr_assert_eq(fn.lo, pers);
    cr_assert_eq(fn.hi, pers + 1);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

static void cleanup_landing_pad(const char *flags)
{
    static const char src[] =
        "#include <stdio.h>\n"
        "static void release(int *p) { printf(\"%d\\n\", *p); }\n"
        "__attribute__((noinline)) void may_throw(int x) { if (x > 100) puts(\"big\"); }\n"
        "__attribute__((noinline)) int guarded(int x)\n"
        "{\n"
        "    int v __attribute__((cleanup(release))) = x;\n"
        "    may_throw(x);\n"
        "    return v + 1;\n"
        "}\n"
        "int main(int argc, char **argv) { (void)argv; return guarded(argc) == 0; }\n";
    char all[128];
    snprintf(all, sizeof all, "-O1 -fexceptions %s", flags);
    const char *path = build("cleanup", "c", src, all);
    uint64_t guarded = symbol(path, "guarded");
    pk_image img;
    pk_flow flow;
    load_flow(path, &img, &flow);
    const pk_symbol *sym = pk_image_symbol_at(&img, NULL, guarded);
    cr_assert_gt(flow.from.landing_pads, 0);
    cr_assert(pk_flow_has_target(&flow, guarded + 1, guarded + sym->size),
              "the landing pad, inside guarded");
    pk_range fn;
    cr_assert(pk_flow_function_at(&flow, guarded, &fn));
    cr_assert_eq(fn.lo, guarded);
    cr_assert_eq(fn.hi, guarded + sym->size, "its FDE agrees with its symbol");
    pk_flow_free(&flow);
    pk_image_free(&img);
}

Test(flow, cleanup_landing_pad_in_c)
{
    cleanup_landing_pad("");
}

Test(flow, cleanup_landing_pad_in_32_bit_c)
{
    cleanup_landing_pad("-m32");
}

Test(flow, eh_frame_that_cannot_be_walked_is_an_error)
{
    const char *path = build("eh", "s", eh_s, EH_FLAGS);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    GElf_Shdr sh = section(buf, len, 0, ".eh_frame");
    memset(buf + sh.sh_offset, 0xf0, 4); /* the first entry's length */
    pk_image img;
    pk_flow flow;
    pk_error err;
    cr_assert_eq(pk_image_load_elf_memory(&img, buf, len, "eh", &err), PK_OK);
    cr_assert_eq(pk_flow_build(&img, &flow, &err), PK_ERR_FORMAT);
    cr_assert(strstr(err.msg, ".eh_frame"), "%s", err.msg);
    cr_assert_eq(flow.ntargets + flow.npinned + flow.nfunctions, 0, "left empty");
    pk_image_free(&img);
    free(buf);
}

/* ---- Linux kernel tables ------------------------------------------------------------ */

/* One entry in each table, each naming code separated by bytes nothing
 * pins, but for sc_site, pinned twice; .smp_locks ends in padding. Then a
 * second __ex_table entry shaped like load_unaligned_zeropad's (a MOV
 * load whose fixup is the next instruction) and a jump label of 2 bytes. */
static const char kernel_s[] =
    "    .text\n"
    "    .globl _start, ex_insn, ex_fixup, jl_code, jl_target, sc_site, lock_insn\n"
    "    .globl bug_ud2, alt_instr, zp_insn, jl_short\n"
    "_start: nop\n"
    "ex_insn: movl (%rax), %eax\n"
    "    nop\n"
    "ex_fixup: xor %eax, %eax\n"
    "    ret\n"
    "jl_code: .byte 0x0f, 0x1f, 0x44, 0, 0\n"
    "    nop\n"
    "jl_target: ret\n"
    "sc_site: call ex_fixup\n"
    "    ret\n"
    "lock_insn: lock incl (%rax)\n"
    "    ret\n"
    "bug_ud2: ud2\n"
    "    ret\n"
    "alt_instr: .byte 0x0f, 0x1f, 0x00\n"
    "    ret\n"
    "zp_insn: mov (%rdi), %rax\n"
    "zp_next: ret\n"
    "jl_short: jmp 1f\n"
    "    nop\n"
    "    nop\n"
    "    nop\n"
    "1:  ret\n"
    "    .section .altinstr_replacement,\"ax\"\n"
    "alt_repl: xor %eax, %eax; nop\n"
    "    .section __ex_table,\"a\"\n"
    "    .balign 4\n"
    "    .long ex_insn - ., ex_fixup - ., 0\n"
    "    .long zp_insn - ., zp_next - ., 20\n"
    "    .section __jump_table,\"aw\"\n"
    "    .balign 8\n"
    "    .long jl_code - ., jl_target - .\n"
    "    .quad key - .\n"
    "    .long jl_short - ., jl_target - .\n"
    "    .quad key - .\n"
    "    .section .static_call_sites,\"a\"\n"
    "    .long sc_site - ., key - . + 1\n"
    "    .section .call_sites,\"a\"\n"
    "    .long sc_site - .\n"
    "    .section .smp_locks,\"a\"\n"
    "    .long lock_insn - ., 0, 0\n"
    "    .section __bug_table,\"aw\"\n"
    "    .long bug_ud2 - ., 0\n"
    "    .word 0, 0\n"
    "    .section .altinstructions,\"a\"\n"
    "    .long alt_instr - ., alt_repl - ., 0\n"
    "    .byte 3, 3\n"
    "    .data\n"
    "key: .quad 0\n";

Test(flow, kernel_tables_pin_what_the_kernel_rewrites)
{
    const char *path = build("kernel", "s", kernel_s, EH_FLAGS);
    enum { LOOKED_UP, ANCHORED, PINNED };
    const struct { const char *name; unsigned len, kind; } want[] = {
        { "ex_insn", 2, LOOKED_UP }, { "jl_code", 5, PINNED }, { "sc_site", 5, PINNED },
        { "lock_insn", 3, PINNED }, { "bug_ud2", 2, ANCHORED }, { "alt_instr", 3, PINNED },
        { "zp_insn", 3, ANCHORED }, { "jl_short", 2, PINNED },
    };
    uint64_t at[8];
    for (unsigned i = 0; i < 8; i++)
        at[i] = symbol(path, want[i].name);
    uint64_t start = symbol(path, "_start"), fixup = symbol(path, "ex_fixup");
    uint64_t jl_target = symbol(path, "jl_target");
    pk_image img;
    pk_flow flow;
    load_flow(stripped(path), &img, &flow);
    cr_assert_eq(img.nalts, 1);
    /* The faulting instruction is found through the exception table
     * (looked up); the UD2 and the zeropad-shaped load are read where they
     * are (anchored); the others are rewritten (pinned), the short jump
     * label over its 2 bytes. */
    cr_assert_eq(flow.npinned, 5);
    cr_assert_eq(flow.nanchored, 2);
    cr_assert_eq(flow.nlooked_up, 1);
    size_t n[3] = { 0 };
    for (unsigned i = 0; i < 8; i++) {
        unsigned k = want[i].kind;
        const pk_range *r = k == LOOKED_UP ? &flow.looked_up[n[k]++]
                          : k == ANCHORED ? &flow.anchored[n[k]++] : &flow.pinned[n[k]++];
        cr_assert_eq(r->lo, at[i], "%s", want[i].name);
        cr_assert_eq(r->hi, at[i] + want[i].len, "%s", want[i].name);
    }
    /* The entry point, the jump labels' target, and where a WARN resumes;
     * not the faulting instructions. The fixups are resumes, apart. */
    cr_assert_eq(flow.ntargets, 3);
    uint64_t targets[] = { start, jl_target, at[4] + 2 };
    for (unsigned i = 0; i < 3; i++)
        cr_assert(pk_flow_has_target(&flow, targets[i], targets[i] + 1), "target %u", i);
    cr_assert_eq(flow.nresumes, 2);
    cr_assert(pk_flow_has_resume(&flow, fixup, fixup + 1));
    cr_assert(pk_flow_has_resume(&flow, at[6] + 3, at[6] + 4));
    cr_assert_not(pk_flow_has_target(&flow, fixup, fixup + 1));
    cr_assert_eq(flow.from.kernel_tables, 9, "padding is no entry");
    pk_flow_free(&flow);
    pk_image_free(&img);
}

Test(flow, kernel_table_between_start_and_stop_symbols)
{
    /* As in a linked vmlinux: __jump_table inside .rodata. */
    static const char src[] =
        "    .text\n"
        "    .globl _start\n"
        "_start: .byte 0x0f, 0x1f, 0x44, 0, 0\n"
        "    nop\n"
        "    ret\n"
        "    .section .rodata\n"
        "    .balign 8\n"
        "    .globl __start___jump_table, __stop___jump_table\n"
        "    .quad 0\n"
        "__start___jump_table:\n"
        "    .long _start - ., _start + 6 - .\n"
        "    .quad 0\n"
        "__stop___jump_table:\n"
        "    .quad 0\n";
    const char *path = build("rodata", "s", src, EH_FLAGS);
    uint64_t start = symbol(path, "_start");
    pk_image img;
    pk_flow flow;
    load_flow(path, &img, &flow);
    cr_assert(pk_flow_is_pinned(&flow, start + 4, start + 5));
    cr_assert_not(pk_flow_is_pinned(&flow, start + 5, start + 6));
    cr_assert(pk_flow_has_target(&flow, start + 6, start + 7));
    cr_assert_eq(flow.from.kernel_tables, 1);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

Test(flow, kernel_table_no_layout_fits_is_an_error)
{
    static const char *bad[] = {
        /* 10 bytes: neither 12 nor 8 */
        "    .section __ex_table,\"a\"\n    .long _start - ., _start - .\n    .word 0\n",
        /* an instruction outside code */
        "    .section .smp_locks,\"a\"\n    .long key - .\n",
    };
    for (unsigned i = 0; i < 2; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "    .text\n    .globl _start\n_start: ret\n    .data\nkey: .quad 0\n%s", bad[i]);
        const char *path = build("bad", "s", src, EH_FLAGS);
        pk_image img;
        pk_flow flow;
        pk_error err;
        cr_assert_eq(pk_image_load_file(&img, path, &err), PK_OK, "%s", err.msg);
        cr_assert_eq(pk_flow_build(&img, &flow, &err), PK_ERR_FORMAT);
        cr_assert(strstr(err.msg, i ? ".smp_locks" : "__ex_table"), "%s", err.msg);
        pk_image_free(&img);
    }
}

/* ---- maps and queries ------------------------------------------------------------------ */

Test(flow, system_map_symbols_end_at_the_next)
{
    char path[300];
    snprintf(path, sizeof path, "%s/System.map", dir);
    FILE *f = fopen(path, "w");
    fputs("0000000000001000 T start\n"
          "0000000000001010 t helper\n"
          "0000000000002000 D data\n"
          "0000000000001008 W weak\n", f);
    fclose(f);
    static const uint8_t code[0x40] = { 0x90 };
    pk_image img;
    pk_flow flow;
    pk_error err;
    cr_assert_eq(pk_image_load_raw_memory(&img, code, sizeof code, "raw", 64, 0x1000, &err),
                 PK_OK);
    cr_assert_eq(pk_image_add_symbol_map(&img, path, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(pk_flow_build(&img, &flow, &err), PK_OK, "%s", err.msg);
    static const pk_range want[] = { { 0x1000, 0x1008 }, { 0x1008, 0x1010 }, { 0x1010, 0x1040 } };
    cr_assert_eq(flow.nfunctions, 3);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(flow.functions[i].lo, want[i].lo);
        cr_assert_eq(flow.functions[i].hi, want[i].hi);
    }
    cr_assert_eq(flow.ntargets, 3);
    cr_assert_eq(flow.from.symbols, 3);
    pk_flow_free(&flow);
    pk_image_free(&img);
}

Test(flow, queries_are_half_open)
{
    uint64_t targets[] = { 0x10, 0x20 };
    pk_range pinned[] = { { 0x10, 0x12 }, { 0x30, 0x35 } };
    pk_range functions[] = { { 0x10, 0x20 }, { 0x20, 0x28 }, { 0x40, 0x50 } };
    pk_flow flow = {
        .targets = targets, .ntargets = 2, .pinned = pinned, .npinned = 2,
        .functions = functions, .nfunctions = 3,
    };
    cr_assert(pk_flow_has_target(&flow, 0x10, 0x11));
    cr_assert(pk_flow_has_target(&flow, 0x11, 0x21));
    cr_assert_not(pk_flow_has_target(&flow, 0x11, 0x20));
    cr_assert_not(pk_flow_has_target(&flow, 0x21, UINT64_MAX));
    cr_assert_not(pk_flow_has_target(&flow, 0x10, 0x10), "an empty range");
    cr_assert(pk_flow_is_pinned(&flow, 0x0, 0x11));
    cr_assert(pk_flow_is_pinned(&flow, 0x11, 0x30 + 1));
    cr_assert_not(pk_flow_is_pinned(&flow, 0x12, 0x30));
    cr_assert_not(pk_flow_is_pinned(&flow, 0x35, 0x40));
    cr_assert_not(pk_flow_is_pinned(&flow, 0x31, 0x31));
    pk_range fn;
    cr_assert(pk_flow_function_at(&flow, 0x1f, &fn));
    cr_assert_eq(fn.lo, 0x10);
    cr_assert(pk_flow_function_at(&flow, 0x20, &fn));
    cr_assert_eq(fn.lo, 0x20);
    cr_assert_not(pk_flow_function_at(&flow, 0x28, &fn));
    cr_assert_not(pk_flow_function_at(&flow, 0xf, NULL));
    cr_assert_not(pk_flow_function_at(&flow, 0x50, NULL));
    pk_flow empty = { 0 };
    cr_assert_not(pk_flow_has_target(&empty, 0, UINT64_MAX));
    cr_assert_not(pk_flow_is_pinned(&empty, 0, UINT64_MAX));
    cr_assert_not(pk_flow_has_resume(&empty, 0, UINT64_MAX));
    cr_assert_not(pk_flow_is_looked_up(&empty, 0, UINT64_MAX));
    cr_assert_not(pk_flow_function_at(&empty, 0, NULL));
}

Test(flow, build_checks_its_arguments)
{
    pk_flow flow;
    pk_error err;
    cr_assert_eq(pk_flow_build(NULL, &flow, &err), PK_ERR_USAGE);
    cr_assert_eq(flow.ntargets, 0);
    pk_image img = { 0 };
    cr_assert_eq(pk_flow_build(&img, &flow, &err), PK_ERR_USAGE, "no code");
}
