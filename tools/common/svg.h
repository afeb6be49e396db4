/*
 * svg.h: a few helpers for the hand-written SVG heat maps of `longview heads` and `longview eval`
 * (no plotting dependency): a document, rectangles, escaped text and two colour maps.
 */
#ifndef LV_SVG_H
#define LV_SVG_H

#include <stdio.h>

/* Start the SVG document for path with the header of a w x h canvas (white background); it is
 * written beside path and renamed into place by svg_end (cli_out). One document at a time.
 * NULL after printing the error. */
FILE *svg_begin(const char *path, double w, double h);
/* Write the closing tag and put the file in place; returns 0, or 1 after printing a write error. */
int svg_end(FILE *f, const char *path);

/* fill: "#rrggbb" or "none"; stroke NULL for none. */
void svg_rect(FILE *f, double x, double y, double w, double h, const char *fill, const char *stroke, double stroke_w, const char *tooltip);
/* anchor: "start", "middle" or "end"; the text is XML-escaped. */
void svg_text(FILE *f, double x, double y, double size, const char *anchor, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Text rotated by -90 degrees around (x, y). */
void svg_text_vertical(FILE *f, double x, double y, double size, const char *text);
void svg_line(FILE *f, double x1, double y1, double x2, double y2, const char *stroke, double w);

/* Colour maps on t in [0, 1] (clamped; NaN gives grey), written as "#rrggbb" into out[8]. */
void svg_viridis(double t, char out[8]);
/* red -> amber -> green, the colours of the NIAH plots */
void svg_red_green(double t, char out[8]);
/* black or white, whichever reads better on a background colour "#rrggbb" */
const char *svg_ink_on(const char *bg);

#endif
