/* samples/scan/sensitive.S — one instruction of each catalog row, each at a
 * label of its own, for 32-bit (gcc -m32) and 64-bit builds.
 *
 * The code runs straight from _start, so recursive descent reaches every
 * site up to the first far transfer; the rest follow unreachable code and
 * only the linear sweep finds them. sensitive32.expected and
 * sensitive64.expected list, by label, the row and the sweeps that must find
 * each site. Never run it: it is made to be scanned. */
#ifdef __x86_64__
#define AX %rax
#else
#define AX %eax
#endif
#define SITE(name, ...) name: __VA_ARGS__

    .text
    .globl _start
    .type _start, @function
_start:
    nop                     /* so that the first site has a label of its own */
    /* pg: sensitive but unprivileged */
    SITE(s_sgdt, sgdt (AX))
    SITE(s_sidt, sidt (AX))
    SITE(s_sldt, sldt %ax)
    SITE(s_smsw, smsw %eax)
    SITE(s_str, str %ax)
    SITE(s_pushf, pushf)
    SITE(s_popf, popf)
    SITE(s_lar, lar %ax, %ecx)
    SITE(s_lsl, lsl %ax, %ecx)
    SITE(s_verr, verr %ax)
    SITE(s_verw, verw (AX))
    SITE(s_pop_fs, pop %fs)
    SITE(s_push_gs, push %gs)
    SITE(s_mov_from_cs, mov %cs, %eax)
    SITE(s_mov_to_ds, mov %eax, %ds)
    SITE(s_lss, lss (AX), %ecx)
    SITE(s_int80, int $0x80)
    SITE(s_int3, int3)
    SITE(s_int1, .byte 0xf1)
#ifndef __x86_64__
    SITE(s_push_es, push %es)
    SITE(s_pop_ds, pop %ds)
    SITE(s_lds, lds (AX), %ecx)
    SITE(s_into, into)
#endif
    /* privileged */
    SITE(s_cli, cli)
    SITE(s_sti, sti)
    SITE(s_hlt, hlt)
    SITE(s_in, in $0x60, %al)
    SITE(s_out, out %al, %dx)
    SITE(s_insb, rep insb)
    SITE(s_outsw, outsw)
    SITE(s_lgdt, lgdt (AX))
    SITE(s_lidt, lidt (AX))
    SITE(s_lldt, lldt %ax)
    SITE(s_ltr, ltr %ax)
    SITE(s_lmsw, lmsw %ax)
    SITE(s_clts, clts)
    SITE(s_mov_cr, mov %cr3, AX)
    SITE(s_mov_dr, mov AX, %dr7)
    SITE(s_rdmsr, rdmsr)
    SITE(s_wrmsr, wrmsr)
    SITE(s_invlpg, invlpg (AX))
    SITE(s_invd, invd)
    SITE(s_wbinvd, wbinvd)
    SITE(s_invpcid, invpcid (AX), AX)
    SITE(s_xsetbv, xsetbv)
    SITE(s_stac, stac)
    SITE(s_monitor, monitor)
    SITE(s_xsaves, xsaves (AX))
    SITE(s_encls, encls)
    SITE(s_pvalidate, pvalidate)
    SITE(s_tdcall, tdcall)
    SITE(s_wruss, wrussd %eax, (AX))
    /* extended */
    SITE(s_cpuid, cpuid)
    SITE(s_rdtsc, rdtsc)
    SITE(s_rdtscp, rdtscp)
    SITE(s_rdpid, rdpid AX)
    SITE(s_rdpru, rdpru)
    SITE(s_rdpmc, rdpmc)
    SITE(s_sysenter, sysenter)
    SITE(s_xgetbv, xgetbv)
#ifdef __x86_64__
    SITE(s_swapgs, swapgs)
    SITE(s_syscall, syscall)
    SITE(s_rdfsbase, rdfsbase %rax)
    SITE(s_rmpadjust, rmpadjust)
#endif
    /* far transfers end recursive descent's path */
    SITE(s_call_far, lcall *(AX))
    SITE(s_ret_far, lretl)
    SITE(s_jmp_far, ljmp *(AX))
    SITE(s_iret, iretl)
#ifdef __x86_64__
    SITE(s_sysret, sysretq)
#else
    SITE(s_sysexit, sysexit)
#endif
    SITE(s_after, pushf)
    .size _start, . - _start
