/* SVG line charts (src/eval/svg_plot.c) and `dalign plot` (src/cli/plot.c):
 * round ticks, the moving average, the exact polyline of a tiny series,
 * skipped nulls, escaping, a well-formed document (every tag closed, in
 * order), and the command on JSONL logs written by the test. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/svg_plot.h"

/* |got - want| <= tol, naming the expression (this cmocka has no
 * assert_double_equal) */
#define assert_near(got, want, tol) near_or_fail(#got, (got), (want), (tol))
static void near_or_fail(const char *what, double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s = %.17g, want %.17g (tolerance %g)", what, got, want, tol);
}

static char g_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_svg_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* the document da_svg_plot writes, malloc'd */
static char *render(const da_svg_chart *c)
{
    static char *buf;   /* static: the memstream keeps its address until fclose */
    static size_t len;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    da_svg_plot(f, c);
    fclose(f);
    return buf;
}

/* Every element closed, in order, and one root <svg>: a stack of tag names
 * over the '<'s of the text (attribute values and text never hold '<' or
 * '>': the writer escapes them). */
static void assert_well_formed(const char *svg)
{
    char stack[64][32];
    int depth = 0, roots = 0;
    if (strncmp(svg, "<?xml ", 6)) fail_msg("no XML declaration");
    for (const char *p = strchr(svg + 1, '<'); p; p = strchr(p + 1, '<')) {
        const char *end = strchr(p, '>');
        if (!end) fail_msg("unclosed '<' at byte %d", (int)(p - svg));
        const int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t n = strcspn(name, " />");
        if (n == 0 || n >= sizeof stack[0]) fail_msg("bad tag at byte %d", (int)(p - svg));
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], name, n))
                fail_msg("</%.*s> at byte %d closes %s", (int)n, name, (int)(p - svg),
                         depth ? stack[depth - 1] : "nothing");
            depth--;
        } else if (end[-1] != '/') {   /* not self-closing */
            if (depth == 0) roots++;
            if (depth == 64) fail_msg("nested too deep");
            snprintf(stack[depth++], sizeof stack[0], "%.*s", (int)n, name);
        }
    }
    assert_int_equal(depth, 0);
    assert_int_equal(roots, 1);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    size_t len = strlen(svg);
    assert_true(len > 7 && !strcmp(svg + len - 7, "</svg>\n"));
}

/* points="x,y x,y ..." of the line drawn from xs, ys in a panel at panel_top
 * whose axes span [x_lo, x_hi] x [y_lo, y_hi], by the formula of svg_plot.h */
static void expected_points(char *out, size_t cap, const double *xs, const double *ys, int n, double x_lo,
                            double x_hi, double y_lo, double y_hi, double panel_top)
{
    double w = DA_SVG_WIDTH - DA_SVG_LEFT - DA_SVG_RIGHT, top = panel_top + DA_SVG_PANEL_PAD_T;
    size_t len = (size_t)snprintf(out, cap, "points=\"");
    for (int i = 0; i < n; i++) {
        if (!isfinite(ys[i])) continue;
        double px = DA_SVG_LEFT + (xs[i] - x_lo) / (x_hi - x_lo) * w;
        double py = top + (y_hi - ys[i]) / (y_hi - y_lo) * DA_SVG_PLOT_H;
        len += (size_t)snprintf(out + len, cap - len, "%s%.1f,%.1f", len > 8 ? " " : "", px, py);
    }
    snprintf(out + len, cap - len, "\"");
}

static void test_ticks(void **state)
{
    (void)state;
    double t[DA_SVG_MAX_TICKS], step;
    int n = da_svg_ticks(0.0, 4.0, 5, t, &step);
    assert_int_equal(n, 5);
    assert_near(step, 1.0, 0.0);
    for (int i = 0; i < n; i++) assert_near(t[i], i, 0.0);

    n = da_svg_ticks(0.13, 0.87, 5, t, &step);   /* range / 5 = 0.148 -> 0.2 */
    assert_int_equal(n, 6);
    assert_near(step, 0.2, 1e-15);
    assert_near(t[0], 0.0, 0.0);
    assert_near(t[5], 1.0, 1e-15);

    n = da_svg_ticks(-3.7, 1234.0, 5, t, &step);   /* 247.5 -> 500 */
    assert_near(step, 500.0, 0.0);
    assert_near(t[0], -500.0, 0.0);
    assert_near(t[n - 1], 1500.0, 0.0);

    /* one value: a band around it, still covering it */
    n = da_svg_ticks(0.69, 0.69, 5, t, &step);
    assert_true(n >= 3 && t[0] < 0.69 && t[n - 1] > 0.69);
    n = da_svg_ticks(0.0, 0.0, 5, t, &step);
    assert_true(n >= 3 && t[0] < 0.0 && t[n - 1] > 0.0);

    /* any range: round steps (1, 2 or 5 x 10^e) that cover the data */
    const double ranges[][2] = {{1e-7, 3e-7}, {95.3, 2210.0}, {-0.02, 0.01}, {1e5, 1.00001e5}, {-1e9, 1e9}};
    for (int r = 0; r < 5; r++) {
        n = da_svg_ticks(ranges[r][0], ranges[r][1], 5, t, &step);
        double m = step / pow(10.0, floor(log10(step)));
        assert_true(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9);
        assert_true(n >= 3 && n <= DA_SVG_MAX_TICKS);
        assert_true(t[0] <= ranges[r][0] && t[n - 1] >= ranges[r][1]);
    }
}

static void test_smooth(void **state)
{
    (void)state;
    const double y[6] = {1.0, 3.0, NAN, 5.0, 7.0, 8.0};
    double out[6];
    da_svg_smooth(y, 6, 2, out);
    const double want[6] = {1.0, 2.0, NAN, 4.0, 6.0, 7.5};   /* the last 2 finite values; the gap stays */
    for (int i = 0; i < 6; i++)
        if (isnan(want[i])) assert_true(isnan(out[i]));
        else assert_near(out[i], want[i], 1e-15);
    da_svg_smooth(y, 6, 3, out);
    assert_near(out[4], 5.0, 1e-15);   /* (3 + 5 + 7) / 3 across the gap */
    da_svg_smooth(y, 6, 1, out);
    assert_near(out[5], 8.0, 0.0);
}

/* A tiny series whose data fill round axes exactly: every point is where
 * the formula of svg_plot.h puts it. A null is skipped, a second panel sits
 * one panel lower, and a one-point line is a dot. */
static void test_polyline(void **state)
{
    (void)state;
    const double x[5] = {0, 1, 2, 3, 4}, y[5] = {0, 1, 2, 3, 4};
    const double y2[5] = {10, NAN, 30, 35, 40};   /* axis 10..40, ticks of 10 (range / 5 = 6 -> 10) */
    const double lone[1] = {25}, lone_x[1] = {2};
    const char *names[2] = {"loss", "acc"}, *labels[2] = {"dpo", "rpo"};
    da_svg_line lines[4] = {{5, x, y}, {0, x, y}, {5, x, y2}, {1, lone_x, lone}};
    da_svg_chart c = {"curves", "step", 2, 2, names, labels, lines};
    char *svg = render(&c);
    assert_well_formed(svg);

    char want[1024];
    expected_points(want, sizeof want, x, y, 5, 0, 4, 0, 4, DA_SVG_TOP);
    assert_string_equal(want, "points=\"72.0,244.0 228.0,203.0 384.0,162.0 540.0,121.0 696.0,80.0\"");
    if (!strstr(svg, want)) fail_msg("no %s in:\n%s", want, svg);
    expected_points(want, sizeof want, x, y2, 5, 0, 4, 10, 40, DA_SVG_TOP + DA_SVG_PANEL_H);
    if (!strstr(svg, want)) fail_msg("no %s in:\n%s", want, svg);
    char dot[128];   /* (2, 25): the middle of the second panel */
    snprintf(dot, sizeof dot, "cx=\"%.1f\" cy=\"%.1f\"",
             DA_SVG_LEFT + (DA_SVG_WIDTH - DA_SVG_LEFT - DA_SVG_RIGHT) / 2.0,
             DA_SVG_TOP + DA_SVG_PANEL_H + DA_SVG_PANEL_PAD_T + DA_SVG_PLOT_H / 2.0);
    if (!strstr(svg, dot)) fail_msg("no %s in:\n%s", dot, svg);

    /* two polylines (the empty line draws nothing), the dot, a legend entry
     * each, the panel names and tick labels, the line colours */
    int polylines = 0;
    for (const char *p = svg; (p = strstr(p, "<polyline")); p++) polylines++;
    assert_int_equal(polylines, 2);
    const char *needles[] = {">curves</text>", ">dpo</text>", ">rpo</text>", ">loss</text>", ">acc</text>",
                             ">step</text>", ">40</text>", ">3</text>", "stroke=\"#4e79a7\"", "fill=\"#f28e2b\""};
    for (int i = 0; i < 10; i++)
        if (!strstr(svg, needles[i])) fail_msg("no %s in:\n%s", needles[i], svg);
    free(svg);
}

/* Text is escaped; labels are not JavaScript; a panel without data says so;
 * decimal ticks are printed as round numbers. */
static void test_escaping_and_empty(void **state)
{
    (void)state;
    const double x[3] = {0, 10, 20}, y[3] = {0.13, 0.5, 0.87}, none[3] = {NAN, NAN, NAN};
    const char *names[2] = {"a<b", "empty"}, *labels[1] = {"R&D \"v2\""};
    da_svg_line lines[2] = {{3, x, y}, {3, x, none}};
    da_svg_chart c = {"x < y & z", "step", 2, 1, names, labels, lines};
    char *svg = render(&c);
    assert_well_formed(svg);
    const char *needles[] = {">x &lt; y &amp; z</text>", ">a&lt;b</text>", ">R&amp;D &quot;v2&quot;</text>",
                             ">no data</text>", ">0.6</text>", ">0.2</text>", ">1.0</text>"};
    for (int i = 0; i < 7; i++)
        if (!strstr(svg, needles[i])) fail_msg("no %s in:\n%s", needles[i], svg);
    assert_null(strstr(svg, "0.6000"));
    assert_null(strstr(svg, "<script"));
    free(svg);

    /* many long labels: the legend wraps and the panels move down a row each */
    const char *many[6] = {"a-long-run-name-number-one", "a-long-run-name-number-two", "a-long-run-name-number-3",
                           "a-long-run-name-number-4", "a-long-run-name-number-5", "a-long-run-name-number-6"};
    da_svg_line six[6] = {{3, x, y}, {3, x, y}, {3, x, y}, {3, x, y}, {3, x, y}, {3, x, y}};
    da_svg_chart w = {NULL, "step", 1, 6, names, many, six};
    svg = render(&w);
    assert_well_formed(svg);
    int height = 0;
    assert_non_null(strstr(svg, "height=\""));
    sscanf(strstr(svg, "height=\"") + 8, "%d", &height);
    assert_true(height > DA_SVG_TOP + DA_SVG_PANEL_H + DA_SVG_BOTTOM);
    assert_int_equal((height - DA_SVG_TOP - DA_SVG_PANEL_H - DA_SVG_BOTTOM) % DA_SVG_LEGEND_ROW_H, 0);
    free(svg);
}

/* ---- dalign plot ----------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int run_dalign(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", tu_cli_cmd(), args, tmp_path("log"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void assert_file_has(const char *path, const char *want)
{
    char *text = tu_slurp(path, NULL);
    if (!strstr(text, want)) fail_msg("expected \"%s\" in %s:\n%s", want, path, text);
    free(text);
}

static void test_plot_command(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    /* a trainer's log: a null loss, a line without acc, an unfinished last line */
    write_text(tmp_path("unet-dpo.metrics.jsonl"),
               "{\"step\":0,\"loss\":0,\"acc\":0.5}\n"
               "{\"step\":1,\"loss\":null,\"acc\":0.5}\n"
               "\n"
               "{\"step\":2,\"loss\":2}\n"
               "{\"step\":3,\"loss\":3,\"acc\":0.75}\n"
               "{\"step\":4,\"loss\":4,\"acc\":1}\n"
               "{\"step\":5,\"lo");
    write_text(tmp_path("sft.jsonl"), "{\"step\":0,\"loss\":1,\"acc\":0.5}\n{\"step\":4,\"loss\":1,\"acc\":0.5}\n");
    char args[2048];
    snprintf(args, sizeof args, "plot --y loss,acc --title 'DPO vs SFT' -o %s %s %s", tmp_path("c.svg"),
             tmp_path("unet-dpo.metrics.jsonl"), tmp_path("sft.jsonl"));
    assert_int_equal(run_dalign(args), 0);
    assert_file_has(tmp_path("log"), "unfinished last line");
    char *svg = tu_slurp(tmp_path("c.svg"), NULL);
    assert_well_formed(svg);
    /* loss of unet-dpo: steps 0, 2, 3, 4 (step 1 is null) on axes 0..4 x 0..4 */
    const double x[5] = {0, 1, 2, 3, 4}, loss[5] = {0, NAN, 2, 3, 4};
    char want[1024];
    expected_points(want, sizeof want, x, loss, 5, 0, 4, 0, 4, DA_SVG_TOP);
    if (!strstr(svg, want)) fail_msg("no %s in:\n%s", want, svg);
    const char *needles[] = {">DPO vs SFT</text>", ">unet-dpo</text>", ">sft</text>", ">loss</text>", ">acc</text>"};
    for (int i = 0; i < 5; i++)
        if (!strstr(svg, needles[i])) fail_msg("no %s in the SVG", needles[i]);
    free(svg);

    /* smoothing over 2 points: loss 0, 1, 2.5, 3.5 at steps 0, 2, 3, 4 */
    snprintf(args, sizeof args, "plot --y loss --smooth 2 --labels a,b -o %s %s %s", tmp_path("s.svg"),
             tmp_path("unet-dpo.metrics.jsonl"), tmp_path("sft.jsonl"));
    assert_int_equal(run_dalign(args), 0);
    const double smooth[5] = {0, NAN, 1, 2.5, 3.5};
    expected_points(want, sizeof want, x, smooth, 5, 0, 4, 0, 4, DA_SVG_TOP);
    assert_file_has(tmp_path("s.svg"), want);
    assert_file_has(tmp_path("s.svg"), ">a</text>");

    /* bad input: named, nothing written */
    write_text(tmp_path("bad.jsonl"), "{\"step\":0,\"loss\":1}\n{\"step\":1,\"loss\":\"high\"}\n");
    snprintf(args, sizeof args, "plot --y loss -o %s %s", tmp_path("bad.svg"), tmp_path("bad.jsonl"));
    assert_int_equal(run_dalign(args), 1);
    assert_file_has(tmp_path("log"), "bad.jsonl:2");
    write_text(tmp_path("bad.jsonl"), "{\"step\":0}\n[1, 2]\n{\"step\":2}\n");
    assert_int_equal(run_dalign(args), 1);
    assert_file_has(tmp_path("log"), "not a JSON object");
    snprintf(args, sizeof args, "plot --y loss -o %s %s", tmp_path("bad.svg"), tmp_path("missing.jsonl"));
    assert_int_equal(run_dalign(args), 1);
    assert_file_has(tmp_path("log"), "missing.jsonl");
    assert_true(access(tmp_path("bad.svg"), F_OK) != 0);

    assert_int_equal(run_dalign("plot --help"), 0);
    assert_file_has(tmp_path("log"), "--smooth N");
    assert_int_equal(run_dalign("plot --y loss a.jsonl"), 2);   /* no --y: every numeric key (test_report_html) */
    assert_file_has(tmp_path("log"), "-o OUT.svg is required");
    assert_int_equal(run_dalign("plot --y loss a.jsonl"), 2);
    assert_int_equal(run_dalign("plot --y loss -o x.svg --smooth 0 a.jsonl"), 2);
    assert_int_equal(run_dalign("plot --y loss -o x.svg --labels a,b a.jsonl"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticks),          cmocka_unit_test(test_smooth),
        cmocka_unit_test(test_polyline),       cmocka_unit_test(test_escaping_and_empty),
        cmocka_unit_test(test_plot_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
