/* Internal to src/core: an 8 x 8 transpose of floats in AVX registers,
 * written with GNU vectors (__builtin_shuffle: GCC). Only typedefs and
 * macros: including it anywhere is harmless; the macros are expanded only
 * in code built for GCC on x86, with AVX2 enabled for it.
 *
 * DA_TRANSPOSE8(r, o): given eight rows r0 .. r7 (da_v8f variables named
 * r##0 .. r##7), defines o##0 .. o##7 with o_j[i] = r_i[j]: eight loads'
 * worth of rows become eight columns in 24 shuffles. Named variables, not
 * arrays: GCC keeps arrays on the stack at -O2. Used by the GEMM's sliver
 * gathers (gemm_portable.c:transpose8), the permutes that are transposes
 * (ops_shape.c:block8_avx) and the group norm's statistics
 * (vec_norm.c:lane_stats). Moves values only. */
#ifndef DA_CORE_TRANSPOSE8_H
#define DA_CORE_TRANSPOSE8_H

typedef float da_v8f __attribute__((vector_size(32)));
typedef int da_v8i __attribute__((vector_size(32)));

#define DA_TRANSPOSE8(r, o)                                                                        \
    /* in each 128-bit half: two rows interleaved (lo: elements 0, 1; hi: 2, 3) */                 \
    const da_v8i o##ilo_ = {0, 8, 1, 9, 4, 12, 5, 13}, o##ihi_ = {2, 10, 3, 11, 6, 14, 7, 15};     \
    da_v8f o##t0_ = __builtin_shuffle(r##0, r##1, o##ilo_), o##t1_ = __builtin_shuffle(r##0, r##1, o##ihi_); \
    da_v8f o##t2_ = __builtin_shuffle(r##2, r##3, o##ilo_), o##t3_ = __builtin_shuffle(r##2, r##3, o##ihi_); \
    da_v8f o##t4_ = __builtin_shuffle(r##4, r##5, o##ilo_), o##t5_ = __builtin_shuffle(r##4, r##5, o##ihi_); \
    da_v8f o##t6_ = __builtin_shuffle(r##6, r##7, o##ilo_), o##t7_ = __builtin_shuffle(r##6, r##7, o##ihi_); \
    /* then two such pairs: u_j holds column j of four rows (low half) and column j + 4 (high) */ \
    const da_v8i o##plo_ = {0, 1, 8, 9, 4, 5, 12, 13}, o##phi_ = {2, 3, 10, 11, 6, 7, 14, 15};     \
    da_v8f o##u0_ = __builtin_shuffle(o##t0_, o##t2_, o##plo_), o##u1_ = __builtin_shuffle(o##t0_, o##t2_, o##phi_); \
    da_v8f o##u2_ = __builtin_shuffle(o##t1_, o##t3_, o##plo_), o##u3_ = __builtin_shuffle(o##t1_, o##t3_, o##phi_); \
    da_v8f o##u4_ = __builtin_shuffle(o##t4_, o##t6_, o##plo_), o##u5_ = __builtin_shuffle(o##t4_, o##t6_, o##phi_); \
    da_v8f o##u6_ = __builtin_shuffle(o##t5_, o##t7_, o##plo_), o##u7_ = __builtin_shuffle(o##t5_, o##t7_, o##phi_); \
    /* rows 0-3 with rows 4-7: the low halves are columns 0-3, the high 4-7 */                    \
    const da_v8i o##hlo_ = {0, 1, 2, 3, 8, 9, 10, 11}, o##hhi_ = {4, 5, 6, 7, 12, 13, 14, 15};     \
    da_v8f o##0 = __builtin_shuffle(o##u0_, o##u4_, o##hlo_), o##4 = __builtin_shuffle(o##u0_, o##u4_, o##hhi_); \
    da_v8f o##1 = __builtin_shuffle(o##u1_, o##u5_, o##hlo_), o##5 = __builtin_shuffle(o##u1_, o##u5_, o##hhi_); \
    da_v8f o##2 = __builtin_shuffle(o##u2_, o##u6_, o##hlo_), o##6 = __builtin_shuffle(o##u2_, o##u6_, o##hhi_); \
    da_v8f o##3 = __builtin_shuffle(o##u3_, o##u7_, o##hlo_), o##7 = __builtin_shuffle(o##u3_, o##u7_, o##hhi_)

/* acc += o##0, then o##1, ... o##7: each lane a sum in index order */
#define DA_ADD_COLUMNS8(acc, o)                                                                    \
    ((acc) += o##0, (acc) += o##1, (acc) += o##2, (acc) += o##3, (acc) += o##4, (acc) += o##5,    \
     (acc) += o##6, (acc) += o##7)

/* r##0 .. r##7 = the 8 floats at p0 + i .. p7 + i (unaligned loads) */
#define DA_LOAD8_ROWS(r, p, i)                                                                     \
    da_v8f r##0, r##1, r##2, r##3, r##4, r##5, r##6, r##7;                                          \
    __builtin_memcpy(&r##0, (p)[0] + (i), sizeof r##0);                                            \
    __builtin_memcpy(&r##1, (p)[1] + (i), sizeof r##1);                                            \
    __builtin_memcpy(&r##2, (p)[2] + (i), sizeof r##2);                                            \
    __builtin_memcpy(&r##3, (p)[3] + (i), sizeof r##3);                                            \
    __builtin_memcpy(&r##4, (p)[4] + (i), sizeof r##4);                                            \
    __builtin_memcpy(&r##5, (p)[5] + (i), sizeof r##5);                                            \
    __builtin_memcpy(&r##6, (p)[6] + (i), sizeof r##6);                                            \
    __builtin_memcpy(&r##7, (p)[7] + (i), sizeof r##7)

/* the 8 floats at dst + k * ldd = o##k, k = 0 .. 7 (unaligned stores) */
#define DA_STORE8_ROWS(o, dst, ldd)                                                                \
    do {                                                                                           \
        __builtin_memcpy((dst), &o##0, sizeof o##0);                                               \
        __builtin_memcpy((dst) + (ldd), &o##1, sizeof o##1);                                       \
        __builtin_memcpy((dst) + 2 * (ldd), &o##2, sizeof o##2);                                   \
        __builtin_memcpy((dst) + 3 * (ldd), &o##3, sizeof o##3);                                   \
        __builtin_memcpy((dst) + 4 * (ldd), &o##4, sizeof o##4);                                   \
        __builtin_memcpy((dst) + 5 * (ldd), &o##5, sizeof o##5);                                   \
        __builtin_memcpy((dst) + 6 * (ldd), &o##6, sizeof o##6);                                   \
        __builtin_memcpy((dst) + 7 * (ldd), &o##7, sizeof o##7);                                   \
    } while (0)

#endif
