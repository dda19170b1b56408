/* Line charts as self-contained SVG (svg_plot.h): no CSS, no script, no
 * fonts beyond a generic family, so the file renders the same in a browser,
 * on GitHub and inside a Markdown page. */
#include "eval/svg_plot.h"

#include <math.h>
#include <string.h>

#define TITLE_H 28          /* the title's row, above the legend */
#define LEGEND_SWATCH 18    /* length of the coloured line before a label */
#define CHAR_W 7.0          /* rough width of a 12px sans-serif character, to place legend entries */
#define FONT "font-family=\"sans-serif\""

/* Distinguishable on white and for the common colour-blindnesses (Tableau 10). */
static const char *const COLOURS[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
#define N_COLOURS (int)(sizeof COLOURS / sizeof COLOURS[0])

/* ---- numbers ----------------------------------------------------------- */

/* 1, 2 or 5 x 10^e: the smallest such step >= range / want */
static double round_step(double range, int want)
{
    double raw = range / want;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
}

int da_svg_ticks(double lo, double hi, int want, double *ticks, double *step)
{
    /* one value (or values equal to 9 digits, whose ticks would round to
     * one number): a band around it */
    if (!(hi - lo > 1e-9 * fmax(fabs(lo), fabs(hi)))) {
        double pad = lo != 0.0 ? fabs(lo) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    /* step >= range / want, so at most want + 2 intervals once rounded out */
    if (want < 1) want = 1;
    if (want > DA_SVG_MAX_TICKS - 3) want = DA_SVG_MAX_TICKS - 3;
    double st = round_step(hi - lo, want);
    double first = floor(lo / st), last = ceil(hi / st);
    int n = 0;
    for (double k = first; k <= last && n < DA_SVG_MAX_TICKS; k++) ticks[n++] = k * st;
    *step = st;
    return n;
}

void da_svg_smooth(const double *y, int n, int window, double *out)
{
    if (window < 1) window = 1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            out[i] = y[i];
            continue;
        }
        /* summed afresh for each point, oldest first: no running sum whose
         * rounding would depend on how long the log is */
        int j = i, got = 0;
        for (; j >= 0 && got < window; j--) got += isfinite(y[j]);
        double sum = 0.0;
        for (int t = j + 1; t <= i; t++)
            if (isfinite(y[t])) sum += y[t];
        out[i] = sum / got;
    }
}

/* A tick value with as many decimals as its step needs: 0.25 with step
 * 0.05 is "0.25", not "0.25000000000000001" nor "0.2". */
static void tick_label(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6) v = 0.0;   /* k * step rounding: no "-0" or "1e-17" */
    if (fabs(v) >= 1e6 || step < 1e-4) {
        snprintf(buf, cap, "%.3g", v);
        return;
    }
    int decimals = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", decimals, v);
}

/* ---- the document ------------------------------------------------------ */

/* text content or an attribute value, XML-escaped; control characters
 * (not allowed in XML 1.0) become spaces */
static void put_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '&') fputs("&amp;", f);
        else if (c == '<') fputs("&lt;", f);
        else if (c == '>') fputs("&gt;", f);
        else if (c == '"') fputs("&quot;", f);
        else fputc(c < 0x20 ? ' ' : c, f);
    }
}

/* extra: more attributes, each with a leading space ("" for none) */
static void put_text(FILE *f, double x, double y, const char *anchor, int size, const char *extra, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" %s font-size=\"%d\"%s>", x, y, anchor, FONT, size,
            extra);
    put_escaped(f, s);
    fputs("</text>\n", f);
}

/* the range of the finite points of lines[0..n) into lo/hi (axis 0: x, 1: y);
 * 0 when there is none */
static int data_range(const da_svg_line *lines, int n, int axis, double *lo, double *hi)
{
    int any = 0;
    for (int l = 0; l < n; l++)
        for (int i = 0; i < lines[l].n; i++) {
            double x = lines[l].x[i], y = lines[l].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            double v = axis ? y : x;
            if (!any || v < *lo) *lo = v;
            if (!any || v > *hi) *hi = v;
            any = 1;
        }
    return any;
}

/* Legend entries laid out left to right, wrapping: the number of rows, and
 * with draw set, the entries themselves under the title. */
static int legend(FILE *f, const da_svg_chart *c, int draw)
{
    double x = DA_SVG_LEFT, top = TITLE_H;
    int rows = 1;
    for (int l = 0; l < c->n_lines; l++) {
        const char *label = c->line_labels[l] ? c->line_labels[l] : "";
        double w = LEGEND_SWATCH + 6 + CHAR_W * (double)strlen(label) + 18;
        if (x > DA_SVG_LEFT && x + w > DA_SVG_WIDTH - DA_SVG_RIGHT) {
            x = DA_SVG_LEFT;
            rows++;
        }
        double y = top + (rows - 1) * DA_SVG_LEGEND_ROW_H + 12;
        if (draw) {
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"/>\n",
                    x, y - 4, x + LEGEND_SWATCH, y - 4, COLOURS[l % N_COLOURS]);
            put_text(f, x + LEGEND_SWATCH + 6, y, "start", 12, "", label);
        }
        x += w;
    }
    return rows;
}

typedef struct axis {
    double lo, hi, step;   /* the ticks' round range */
    double ticks[DA_SVG_MAX_TICKS];
    int n;
} axis;

static axis make_axis(int any, double lo, double hi)
{
    axis a;
    if (!any) lo = 0.0, hi = 1.0;   /* an empty panel still gets its frame */
    a.n = da_svg_ticks(lo, hi, 5, a.ticks, &a.step);
    a.lo = a.ticks[0];
    a.hi = a.ticks[a.n - 1];
    return a;
}

/* frame, grid lines and tick labels of one plot area (x0, y0, w, h) */
static void draw_axes(FILE *f, const axis *ax, const axis *ay, double x0, double y0, double w, double h)
{
    char label[48];
    for (int i = 0; i < ay->n; i++) {
        double py = y0 + (ay->hi - ay->ticks[i]) / (ay->hi - ay->lo) * h;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x0, py, x0 + w, py);
        tick_label(label, sizeof label, ay->ticks[i], ay->step);
        put_text(f, x0 - 6, py + 4, "end", 11, " fill=\"#444\"", label);
    }
    for (int i = 0; i < ax->n; i++) {
        double px = x0 + (ax->ticks[i] - ax->lo) / (ax->hi - ax->lo) * w;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", px, y0, px, y0 + h);
        tick_label(label, sizeof label, ax->ticks[i], ax->step);
        put_text(f, px, y0 + h + 16, "middle", 11, " fill=\"#444\"", label);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0,
            w, h);
}

/* one line's finite points: a polyline, or a dot when there is one point */
static void draw_line(FILE *f, const da_svg_line *line, const axis *ax, const axis *ay, double x0, double y0,
                      double w, double h, const char *colour)
{
    const double *x = line->x, *y = line->y;
    int n = 0;
    for (int i = 0; i < line->n; i++) n += isfinite(x[i]) && isfinite(y[i]);
    if (n == 0) return;
    if (n == 1) fprintf(f, "<circle r=\"2.5\" fill=\"%s\"", colour);
    else fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
    const char *sep = "";
    for (int i = 0; i < line->n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        double px = x0 + (x[i] - ax->lo) / (ax->hi - ax->lo) * w;
        double py = y0 + (ay->hi - y[i]) / (ay->hi - ay->lo) * h;
        if (n == 1) fprintf(f, " cx=\"%.1f\" cy=\"%.1f\"", px, py);
        else fprintf(f, "%s%.1f,%.1f", sep, px, py);
        sep = " ";
    }
    fputs(n == 1 ? "/>\n" : "\"/>\n", f);
}

/* panel p: its name, axes and lines, below top */
static void draw_panel(FILE *f, const da_svg_chart *c, int p, const axis *ax, double top)
{
    const da_svg_line *lines = c->lines + (size_t)p * c->n_lines;
    double lo = 0.0, hi = 0.0;
    int any = data_range(lines, c->n_lines, 1, &lo, &hi);
    axis ay = make_axis(any, lo, hi);
    double x0 = DA_SVG_LEFT, y0 = top + DA_SVG_PANEL_PAD_T;
    double w = DA_SVG_WIDTH - DA_SVG_LEFT - DA_SVG_RIGHT, h = DA_SVG_PLOT_H;
    put_text(f, x0, top + 16, "start", 13, " font-weight=\"bold\"", c->panel_names[p] ? c->panel_names[p] : "");
    draw_axes(f, ax, &ay, x0, y0, w, h);
    if (!any) put_text(f, x0 + w / 2, y0 + h / 2, "middle", 12, " fill=\"#888\"", "no data");
    for (int l = 0; l < c->n_lines; l++) draw_line(f, &lines[l], ax, &ay, x0, y0, w, h, COLOURS[l % N_COLOURS]);
}

void da_svg_plot(FILE *f, const da_svg_chart *c)
{
    /* one x axis for every panel, so the panels line up step for step */
    double lo = 0.0, hi = 0.0;
    int any = data_range(c->lines, c->n_panels * c->n_lines, 0, &lo, &hi);
    axis ax = make_axis(any, lo, hi);

    int legend_rows = legend(f, c, 0);
    double top = DA_SVG_TOP + (legend_rows - 1) * DA_SVG_LEGEND_ROW_H;
    double height = top + c->n_panels * DA_SVG_PANEL_H + DA_SVG_BOTTOM;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            DA_SVG_WIDTH, height, DA_SVG_WIDTH, height);
    if (c->title && *c->title) put_text(f, DA_SVG_LEFT, 20, "start", 15, " font-weight=\"bold\"", c->title);
    legend(f, c, 1);
    for (int p = 0; p < c->n_panels; p++) draw_panel(f, c, p, &ax, top + p * DA_SVG_PANEL_H);
    put_text(f, DA_SVG_LEFT + (DA_SVG_WIDTH - DA_SVG_LEFT - DA_SVG_RIGHT) / 2.0, height - 8, "middle", 12, "",
             c->x_name ? c->x_name : "");
    fputs("</svg>\n", f);
}
