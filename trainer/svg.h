/* A tiny SVG line and scatter plot writer for `retort report`.
 *
 * Hand-written SVG, so a report needs no plotting tool and renders in any
 * browser or Markdown viewer. One plot: a title, two labelled axes with
 * "nice" ticks (1, 2, 5 x 10^k; a log10 x axis on request), and any number
 * of named series, each drawn as a polyline or as points, optionally with a
 * text label next to every point; a legend on the right. Non-finite points
 * are skipped (and a log axis skips x <= 0). */
#ifndef TRAINER_SVG_H
#define TRAINER_SVG_H

#include "rt_status.h"

typedef struct trainer_svg trainer_svg;

/* log_x != 0: the x axis is log10. Strings are copied. */
rt_status trainer_svg_create(const char *title, const char *xlabel, const char *ylabel, int log_x,
                          trainer_svg **out);
void trainer_svg_destroy(trainer_svg *p); /* NULL-safe */

/* Adds n points (copied). lines = 1 joins them in order with a solid line,
 * 2 with a dashed one, 0 draws markers; labels (n strings, may be NULL) are
 * written next to the points, each moved to the first of a few places
 * around its point where it overlaps no label already placed. The legend
 * on the right is as wide as the longest series name. */
rt_status trainer_svg_series(trainer_svg *p, const char *name, const double *x, const double *y, int n,
                          int lines, const char *const *labels);

/* Number of points of every series that would be drawn (finite, and x > 0
 * on a log axis). */
int trainer_svg_n_drawn(const trainer_svg *p);

/* Writes the plot to `path` (via path.tmp and a rename); RT_ERR_IO names the
 * file. A plot without drawable points says so in its middle. */
rt_status trainer_svg_write(const trainer_svg *p, const char *path);

#endif
