/* Line charts as self-contained SVG (`dalign plot`, src/cli/plot.c): one
 * panel per metric, stacked vertically, one coloured line per run, a legend
 * and round tick values. Pure: data in, SVG text out, no files, so the
 * training curves in the docs come out the same from the same logs.
 *
 * Geometry (user units = pixels), top to bottom:
 *
 *   DA_SVG_TOP               title and legend (one row of it; each further
 *                            row adds DA_SVG_LEGEND_ROW_H)
 *   n_panels x DA_SVG_PANEL_H, each: DA_SVG_PANEL_PAD_T above its plot area
 *                            (panel name), DA_SVG_PANEL_PAD_B below it (x ticks)
 *   DA_SVG_BOTTOM            the x axis' name
 *
 * and across: DA_SVG_LEFT (y ticks) | plot area | DA_SVG_RIGHT, in
 * DA_SVG_WIDTH. Each axis spans its ticks' round range (see da_svg_ticks),
 * so a point (x, y) of panel p is drawn at
 *
 *   px = DA_SVG_LEFT + (x - x_lo) / (x_hi - x_lo) * plot width
 *   py = top of p's plot area + (y_hi - y) / (y_hi - y_lo) * DA_SVG_PLOT_H
 *
 * written with one decimal ("%.1f"). */
#ifndef DA_EVAL_SVG_PLOT_H
#define DA_EVAL_SVG_PLOT_H

#include <stdio.h>

#define DA_SVG_WIDTH 720
#define DA_SVG_LEFT 72
#define DA_SVG_RIGHT 24
#define DA_SVG_TOP 56
#define DA_SVG_BOTTOM 28
#define DA_SVG_LEGEND_ROW_H 20
#define DA_SVG_PANEL_H 220
#define DA_SVG_PANEL_PAD_T 24
#define DA_SVG_PANEL_PAD_B 32
#define DA_SVG_PLOT_H (DA_SVG_PANEL_H - DA_SVG_PANEL_PAD_T - DA_SVG_PANEL_PAD_B)
#define DA_SVG_MAX_TICKS 12

/* One line: n points; a point whose x or y is not finite (a null in the
 * log) is skipped, and the line joins its neighbours. */
typedef struct da_svg_line {
    int n;
    const double *x, *y;
} da_svg_line;

typedef struct da_svg_chart {
    const char *title;                /* NULL or "": none */
    const char *x_name;               /* under the last panel, e.g. "step" */
    int n_panels, n_lines;
    const char *const *panel_names;   /* (n_panels) e.g. "loss" */
    const char *const *line_labels;   /* (n_lines) the legend */
    const da_svg_line *lines;         /* (n_panels, n_lines): line l of panel p at [p * n_lines + l] */
} da_svg_chart;

/* Round tick values for data in [lo, hi]: a step of 1, 2 or 5 x 10^e giving
 * about `want` intervals, and the multiples of it from floor(lo / step) to
 * ceil(hi / step), so the ticks cover the data. An empty or one-value range
 * is widened first. Writes at most DA_SVG_MAX_TICKS values; returns their
 * count and the step in *step. */
int da_svg_ticks(double lo, double hi, int want, double *ticks, double *step);

/* Trailing moving average, for smoothing a line before it is drawn:
 * out[i] = mean of the last `window` finite y at or before i (fewer at the
 * start); out[i] = y[i] where y[i] is not finite, so gaps stay gaps. out
 * may not alias y. */
void da_svg_smooth(const double *y, int n, int window, double *out);

/* The whole SVG document to f. Allocates nothing, so it cannot fail (a
 * write error shows on f). */
void da_svg_plot(FILE *f, const da_svg_chart *c);

#endif
