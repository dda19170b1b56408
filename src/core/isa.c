/* Which copy of the vector kernels runs (core/vec.h), and the public
 * kernels, each a call through that copy's table.
 *
 * At start the widest instruction set the CPU (and its OS) supports is
 * chosen; DA_ISA (read by da_threads_init) or da_set_isa picks another.
 * Every copy gives the same bits (tests/test_isa.c), so the choice changes
 * speed only. */
#include <string.h>

#include "core/vec.h"
#include "dalign/core.h"

#define DA_VEC_ENTRY_BASE(name, params, args) .name = name##_base,
static const da_vec_table vec_base = {.isa = "base", DA_VEC_KERNELS(DA_VEC_ENTRY_BASE)};

#if defined(DA_VEC_X86)
#define DA_VEC_ENTRY_AVX2(name, params, args) .name = name##_avx2,
#define DA_VEC_ENTRY_AVX512(name, params, args) .name = name##_avx512,
static const da_vec_table vec_avx2 = {.isa = "avx2", DA_VEC_KERNELS(DA_VEC_ENTRY_AVX2)};
static const da_vec_table vec_avx512 = {.isa = "avx512", DA_VEC_KERNELS(DA_VEC_ENTRY_AVX512)};

/* the flags each copy was compiled with (Makefile VEC_FLAGS_*), as CPU features */
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif

/* the widest copy this CPU runs */
static const da_vec_table *vec_best(void)
{
#if defined(DA_VEC_X86)
    if (cpu_has_avx512()) return &vec_avx512;
    if (cpu_has_avx2()) return &vec_avx2;
#endif
    return &vec_base;
}

const da_vec_table *da_vec = &vec_base;

#if defined(__GNUC__)
/* before main and before any thread: the table is read without a lock */
__attribute__((constructor)) static void vec_init(void) { da_vec = vec_best(); }
#endif

const char *da_isa(void) { return da_vec->isa; }

int da_vec_avx2(void) { return da_vec != &vec_base; }

da_status da_set_isa(const char *name)
{
    if (!name || !*name || !strcmp(name, "best")) {
        da_vec = vec_best();
        return DA_OK;
    }
    if (!strcmp(name, "base")) {
        da_vec = &vec_base;
        return DA_OK;
    }
#if defined(DA_VEC_X86)
    if (!strcmp(name, "avx2") || !strcmp(name, "avx512")) {
        int wide = !strcmp(name, "avx512");
        if (wide ? !cpu_has_avx512() : !cpu_has_avx2())
            return da_fail(DA_ERR_INVALID, "instruction set '%s': this CPU does not support it (best here: %s)",
                           name, vec_best()->isa);
        da_vec = wide ? &vec_avx512 : &vec_avx2;
        return DA_OK;
    }
    return da_fail(DA_ERR_INVALID, "unknown instruction set '%s' (base, avx2, avx512 or best)", name);
#else
    return da_fail(DA_ERR_INVALID, "instruction set '%s': this build has only 'base' (and 'best' = base)", name);
#endif
}

/* the public kernels: one call through the table each */
#define DA_VEC_CALL(name, params, args) \
    void name params { da_vec->name args; }
DA_VEC_KERNELS(DA_VEC_CALL)
