/* The SVG plot writer of svg.h: bounds over the drawable points, nice
 * ticks, then one <polyline> or a run of <circle>s per series. Coordinates
 * are printed with %.2f: a hundredth of a pixel is below what any renderer
 * shows, and it keeps the files small and diffable. */
#define _GNU_SOURCE
#include "svg.h"

#include "fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W = 720, H = 440, ML = 78, MR = 170, MT = 44, MB = 56, MAX_SERIES = 64 };

typedef struct {
    char *name;
    double *x, *y;
    char **labels; /* NULL or n strings */
    int n, lines;
} series;

struct trainer_svg {
    char *title, *xlabel, *ylabel;
    int log_x;
    series s[MAX_SERIES];
    int n_series;
};

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
enum { N_COLORS = sizeof COLORS / sizeof COLORS[0] };

rt_status trainer_svg_create(const char *title, const char *xlabel, const char *ylabel, int log_x,
                          trainer_svg **out) {
    trainer_svg *p = calloc(1, sizeof *p);
    if (p) {
        p->title = strdup(title);
        p->xlabel = strdup(xlabel);
        p->ylabel = strdup(ylabel);
        p->log_x = log_x;
    }
    if (!p || !p->title || !p->xlabel || !p->ylabel) {
        trainer_svg_destroy(p);
        *out = NULL;
        return rt_fail(RT_ERR_NOMEM, "svg: out of memory for plot '%s'", title);
    }
    *out = p;
    return RT_OK;
}

void trainer_svg_destroy(trainer_svg *p) {
    if (!p) return;
    for (int i = 0; i < p->n_series; i++) {
        series *s = &p->s[i];
        if (s->labels)
            for (int j = 0; j < s->n; j++) free(s->labels[j]);
        free(s->labels);
        free(s->name);
        free(s->x);
        free(s->y);
    }
    free(p->title);
    free(p->xlabel);
    free(p->ylabel);
    free(p);
}

rt_status trainer_svg_series(trainer_svg *p, const char *name, const double *x, const double *y, int n,
                          int lines, const char *const *labels) {
    if (p->n_series == MAX_SERIES)
        return rt_fail(RT_ERR_ARGS, "svg: plot '%s' has more than %d series", p->title,
                       MAX_SERIES);
    series *s = &p->s[p->n_series];
    memset(s, 0, sizeof *s);
    s->n = n > 0 ? n : 0;
    s->lines = lines;
    s->name = strdup(name);
    s->x = malloc((size_t)s->n * sizeof *s->x + 1);
    s->y = malloc((size_t)s->n * sizeof *s->y + 1);
    int ok = s->name && s->x && s->y;
    if (ok && labels) {
        s->labels = calloc((size_t)s->n + 1, sizeof *s->labels);
        ok = s->labels != NULL;
        for (int i = 0; ok && i < s->n; i++) ok = (s->labels[i] = strdup(labels[i] ? labels[i] : "")) != NULL;
    }
    p->n_series++; /* so that destroy frees a half-built series too */
    if (!ok) return rt_fail(RT_ERR_NOMEM, "svg: out of memory for series '%s'", name);
    if (s->n) {
        memcpy(s->x, x, (size_t)s->n * sizeof *x);
        memcpy(s->y, y, (size_t)s->n * sizeof *y);
    }
    return RT_OK;
}

static int drawable(const trainer_svg *p, double x, double y) {
    return isfinite(x) && isfinite(y) && (!p->log_x || x > 0);
}

int trainer_svg_n_drawn(const trainer_svg *p) {
    int n = 0;
    for (int i = 0; i < p->n_series; i++)
        for (int j = 0; j < p->s[i].n; j++) n += drawable(p, p->s[i].x[j], p->s[i].y[j]);
    return n;
}

/* A tick step of 1, 2 or 5 x 10^k giving about `want` ticks over `range`. */
static double nice_step(double range, int want) {
    const double raw = range / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

/* Widens [*lo, *hi] to whole ticks; a flat range gets room around it. */
static void nice_range(double *lo, double *hi, double *step) {
    if (*hi - *lo <= 1e-12 * fmax(1, fabs(*hi))) {
        const double pad = *hi != 0 ? fabs(*hi) * 0.1 : 1;
        *lo -= pad, *hi += pad;
    }
    *step = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi / *step) * *step;
}

static void fmt_tick(char *buf, size_t cap, double v) {
    const double a = fabs(v);
    /* Large round ticks (tokens, bytes) read best with SI suffixes: "200k", "5M". */
    static const char *const SI[] = {"k", "M", "G", "T"};
    for (int k = 3; a >= 1e4 && k >= 0; k--) {
        const double unit = pow(10, 3 * (k + 1));
        if (a >= unit && fabs(v / unit - round(v / unit * 100) / 100) < 1e-9) {
            snprintf(buf, cap, "%g%s", round(v / unit * 100) / 100, SI[k]);
            return;
        }
    }
    if (a != 0 && (a >= 1e6 || a < 1e-3)) { /* "1e+06" -> "1e6", "5e-05" -> "5e-5" */
        char raw[32], *o = buf;
        snprintf(raw, sizeof raw, "%.3g", v);
        const char *e = strchr(raw, 'e');
        if (!e || cap < sizeof raw) {
            snprintf(buf, cap, "%s", raw);
            return;
        }
        memcpy(o, raw, (size_t)(e - raw + 1));
        o += e - raw + 1;
        e++;
        if (*e == '-') *o++ = *e;
        if (*e == '+' || *e == '-') e++;
        while (*e == '0' && e[1]) e++;
        snprintf(o, cap - (size_t)(o - buf), "%s", e);
    } else
        snprintf(buf, cap, "%.6g", fabs(v) < 1e-12 ? 0.0 : v);
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* Control bytes are not allowed in XML 1.0 text. */
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

/* Approximate extent of 12 px sans-serif text: 7 px per byte (UTF-8
 * continuation bytes take no width of their own). */
static double text_width(const char *s) {
    double w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80 ? 7.0 : 0.0;
    return w;
}

typedef struct {
    double x0, y0, x1, y1;
} box;

/* Where a label of width w goes near the point (cx, cy): the first place,
 * right of the point then left of it, at a baseline just above, just
 * below, then further up and down, that stays inside the plot area and
 * overlaps no box in placed[0 .. n); right-above when none does.
 * *anchor_end is 1 when the text is right-aligned (left of the point). */
static box place_label(double cx, double cy, double w, const box *placed, int n, double px0,
                       double py0, double px1, double py1, int *anchor_end) {
    static const double dy[] = {-6, 16, -20, 30, -34, 44, -48, 58};
    const double th = 13;
    for (int c = 0; c < 2 * (int)(sizeof dy / sizeof dy[0]); c++) {
        const int left = c % 2;
        box b;
        b.x0 = left ? cx - 8 - w : cx + 8, b.x1 = b.x0 + w;
        b.y1 = cy + dy[c / 2] + 3, b.y0 = b.y1 - th; /* baseline at cy + dy */
        if (b.x0 < px0 || b.x1 > px1 || b.y0 < py0 || b.y1 > py1) continue;
        int hit = 0;
        for (int i = 0; i < n && !hit; i++)
            hit = b.x0 < placed[i].x1 && placed[i].x0 < b.x1 && b.y0 < placed[i].y1 &&
                  placed[i].y0 < b.y1;
        if (!hit) {
            *anchor_end = left;
            return b;
        }
    }
    *anchor_end = 0;
    return (box){cx + 8, cy - 6 + 3 - th, cx + 8 + w, cy - 6 + 3};
}

static void write_body(const trainer_svg *p, FILE *f) {
    /* the legend is as wide as its longest name: the total width grows */
    double legend = 0;
    for (int i = 0; i < p->n_series; i++) legend = fmax(legend, text_width(p->s[i].name));
    const int mr = (int)fmax(MR, 34 + legend + 12), Wt = W - MR + mr;
    const double pw = W - ML - MR, ph = H - MT - MB;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < p->n_series; i++)
        for (int j = 0; j < p->s[i].n; j++) {
            double x = p->s[i].x[j], y = p->s[i].y[j];
            if (!drawable(p, x, y)) continue;
            if (p->log_x) x = log10(x);
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
            Wt, H, Wt, H, Wt, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", Wt / 2);
    xml_text(f, p->title);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", ML + pw / 2, H - 12);
    xml_text(f, p->xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" "
               "transform=\"rotate(-90 16 %.1f)\">", MT + ph / 2, MT + ph / 2);
    xml_text(f, p->ylabel);
    fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
               "stroke=\"#333\"/>\n", ML, MT, pw, ph);
    if (x0 > x1) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888\">no data"
                   "</text>\n</svg>\n", ML + pw / 2, MT + ph / 2);
        return;
    }
    double xs, ys;
    if (p->log_x) { /* whole decades, ticks at 10^k (and 2, 5 x 10^k over few decades) */
        x0 = floor(x0), x1 = ceil(x1);
        if (x1 - x0 < 1) x1 = x0 + 1;
        xs = 1;
    } else {
        nice_range(&x0, &x1, &xs);
    }
    nice_range(&y0, &y1, &ys);
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + ph - ((y) - y0) / (y1 - y0) * ph)
    char buf[64];
    for (double t = y0; t <= y1 + ys * 1e-6; t += ys) {
        fmt_tick(buf, sizeof buf, t);
        fprintf(f, "<line x1=\"%d\" x2=\"%.0f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#eee\"/>"
                   "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                ML, ML + pw, PY(t), PY(t), ML - 6, PY(t) + 4, buf);
    }
    for (double t = x0; t <= x1 + xs * 1e-6; t += xs) {
        static const double sub[] = {1, 2, 5};
        const int n_sub = p->log_x && x1 - x0 <= 3 ? 3 : 1;
        for (int k = 0; k < n_sub; k++) {
            const double v = p->log_x ? t + log10(sub[k]) : t;
            if (v > x1 + 1e-9) break;
            fmt_tick(buf, sizeof buf, p->log_x ? pow(10, v) : v);
            fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%.0f\" stroke=\"#eee\"/>"
                       "<text x=\"%.2f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
                    PX(v), PX(v), MT, MT + ph, PX(v), MT + ph + 18, buf);
        }
    }
    int n_labels = 0, n_placed = 0;
    for (int i = 0; i < p->n_series; i++)
        if (p->s[i].labels) n_labels += p->s[i].n;
    box *placed = malloc((size_t)(n_labels > 0 ? n_labels : 1) * sizeof *placed);
    for (int i = 0; i < p->n_series; i++) {
        const series *s = &p->s[i];
        const char *color = COLORS[i % N_COLORS];
        if (s->lines) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                    color, s->lines == 2 ? " stroke-dasharray=\"6 4\"" : "");
            for (int j = 0; j < s->n; j++)
                if (drawable(p, s->x[j], s->y[j]))
                    fprintf(f, "%.2f,%.2f ", PX(p->log_x ? log10(s->x[j]) : s->x[j]), PY(s->y[j]));
            fprintf(f, "\"/>\n");
        }
        for (int j = 0; j < s->n; j++) {
            if (!drawable(p, s->x[j], s->y[j])) continue;
            const double cx = PX(p->log_x ? log10(s->x[j]) : s->x[j]), cy = PY(s->y[j]);
            if (!s->lines || (s->n == 1 && s->lines == 1))
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"5\" fill=\"%s\"/>\n", cx, cy, color);
            if (s->labels && s->labels[j][0]) {
                int end = 0;
                const box b = place_label(cx, cy, text_width(s->labels[j]), placed,
                                          placed ? n_placed : 0, ML, MT, ML + pw, MT + ph, &end);
                if (placed) placed[n_placed++] = b;
                fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" fill=\"%s\"%s>", end ? b.x1 : b.x0,
                        b.y1 - 3, color, end ? " text-anchor=\"end\"" : "");
                xml_text(f, s->labels[j]);
                fprintf(f, "</text>\n");
            }
        }
        const double ly = MT + 10 + 20 * i;
        fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"14\" height=\"4\" fill=\"%s\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\">", ML + pw + 14, ly, color, ML + pw + 34, ly + 6);
        xml_text(f, s->name);
        fprintf(f, "</text>\n");
    }
    free(placed);
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
}

static void put_svg(FILE *f, const void *p) { write_body(p, f); }

rt_status trainer_svg_write(const trainer_svg *p, const char *path) {
    return data_write_atomic(path, put_svg, p);
}
