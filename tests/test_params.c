/* da_params: table lookup, save/load round trip, and loads that fail leave
 * the model untouched (all-or-nothing). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void build(da_params *p, int width)
{
    int w[2] = {width, 3}, b[1] = {width};
    da_params_init(p);
    da_params_add(p, "fc.weight", 2, w);
    da_params_add(p, "fc.bias", 1, b);
    assert_int_equal(da_params_alloc(p, 0), DA_OK);
}

static void test_params_roundtrip_and_atomic_load(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/dalign_test_params_%d.safetensors", (int)getpid());
    da_params a, b, c;
    build(&a, 4);
    tu_fill(a.data, a.total, 7u, -1.0f, 1.0f);
    assert_int_equal(da_params_find(&a, "fc.bias"), 1);
    assert_int_equal(da_params_find(&a, "fc.nope"), -1);
    assert_ptr_equal(da_params_get(&a, "fc.bias"), a.data + 12);
    assert_int_equal(da_params_save(&a, path, NULL, 0), DA_OK);

    build(&b, 4);
    assert_int_equal(da_params_load(&b, path), DA_OK);
    tu_assert_bits("round trip", b.data, a.data, a.total);

    /* a model whose first tensor matches but the second does not: the load
     * fails naming the tensor, and not one value of the model changes */
    da_params_free(&b);
    da_params_init(&b);
    int w[2] = {4, 3}, bad[1] = {5};
    da_params_add(&b, "fc.weight", 2, w);
    da_params_add(&b, "fc.bias", 1, bad);
    assert_int_equal(da_params_alloc(&b, 0), DA_OK);
    for (size_t i = 0; i < b.total; i++) b.data[i] = 42.0f;
    assert_int_equal(da_params_load(&b, path), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "fc.bias"));
    for (size_t i = 0; i < b.total; i++) assert_true(b.data[i] == 42.0f);

    /* the file holds a tensor the model does not have */
    build(&c, 4);
    da_params_free(&c);
    da_params_init(&c);
    da_params_add(&c, "fc.weight", 2, w);
    assert_int_equal(da_params_alloc(&c, 0), DA_OK);
    assert_int_equal(da_params_load(&c, path), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "unexpected tensor 'fc.bias'"));

    unlink(path);
    da_params_free(&a);
    da_params_free(&b);
    da_params_free(&c);
}

/* A weights file holding a NaN or an infinity is refused, naming the
 * tensor and the element, and the model keeps its values (issue 14: a NaN
 * weight made every image black with exit 0). */
static void test_nonfinite_refused(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/dalign_test_params_nan_%d.safetensors", (int)getpid());
    const float bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        da_params a, b;
        build(&a, 4);
        tu_fill(a.data, a.total, 3u, -1.0f, 1.0f);
        a.data[12 + 2] = bad[k];   /* fc.bias[2] */
        assert_int_equal(da_params_save(&a, path, NULL, 0), DA_OK);
        build(&b, 4);
        for (size_t i = 0; i < b.total; i++) b.data[i] = 7.0f;
        assert_int_equal(da_params_load(&b, path), DA_ERR_FORMAT);
        assert_non_null(strstr(da_last_error(), "tensor 'fc.bias' holds a non-finite value"));
        assert_non_null(strstr(da_last_error(), "element 2"));
        assert_non_null(strstr(da_last_error(), path));
        for (size_t i = 0; i < b.total; i++) assert_true(b.data[i] == 7.0f);
        da_params_free(&a);
        da_params_free(&b);
    }
    float ok[3] = {1, 2, 3}, nan3[3] = {1, NAN, 3};
    assert_true(da_first_nonfinite(ok, 3) == (size_t)-1);
    assert_true(da_first_nonfinite(nan3, 3) == 1);
    unlink(path);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_roundtrip_and_atomic_load),
        cmocka_unit_test(test_nonfinite_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
