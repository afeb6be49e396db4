/*
 * svg.c: hand-written SVG for the heat maps (see svg.h).
 */
#include "svg.h"

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* the document being written: one at a time, renamed into place by svg_end (cli_out) */
static cli_out g_doc;

FILE *svg_begin(const char *path, double w, double h) {
    if (g_doc.f) {
        cli_error("internal: an SVG is already being written");
        return NULL;
    }
    FILE *f = cli_out_open(&g_doc, path, false);
    if (!f) return NULL;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
            w, h, w, h, w, h);
    return f;
}

int svg_end(FILE *f, const char *path) {
    (void)path;
    if (f != g_doc.f) {
        cli_error("internal: svg_end on a document svg_begin did not open");
        return 1;
    }
    fputs("</svg>\n", f);
    return cli_out_commit(&g_doc) != 0;
}

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n') fputc(*s, f);
        }
    }
}

void svg_rect(FILE *f, double x, double y, double w, double h, const char *fill, const char *stroke, double stroke_w, const char *tooltip) {
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"", x, y, w, h, fill);
    if (stroke) fprintf(f, " stroke=\"%s\" stroke-width=\"%.2f\"", stroke, stroke_w);
    if (tooltip) {
        fputs("><title>", f);
        put_escaped(f, tooltip);
        fputs("</title></rect>\n", f);
    } else {
        fputs("/>\n", f);
    }
}

void svg_text(FILE *f, double x, double y, double size, const char *anchor, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\">", x, y, size, anchor);
    put_escaped(f, buf);
    fputs("</text>\n", f);
}

void svg_text_vertical(FILE *f, double x, double y, double size, const char *text) {
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 %.2f %.2f)\">", x, y, size, x, y);
    put_escaped(f, text);
    fputs("</text>\n", f);
}

void svg_line(FILE *f, double x1, double y1, double x2, double y2, const char *stroke, double w) {
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"%.2f\"/>\n", x1, y1, x2, y2, stroke, w);
}

static void interp(const unsigned char (*stops)[3], int n, double t, char out[8]) {
    if (isnan(t)) {
        snprintf(out, 8, "#bbbbbb");
        return;
    }
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * (n - 1);
    int i = (int)floor(x);
    if (i >= n - 1) i = n - 2;
    double u = x - i;
    int c[3];
    for (int k = 0; k < 3; k++) c[k] = (int)lround(stops[i][k] + u * (stops[i + 1][k] - stops[i][k]));
    snprintf(out, 8, "#%02x%02x%02x", c[0] & 0xff, c[1] & 0xff, c[2] & 0xff);
}

void svg_viridis(double t, char out[8]) {
    static const unsigned char stops[9][3] = {
        {68, 1, 84}, {71, 44, 122}, {59, 81, 139}, {44, 113, 142}, {33, 144, 141}, {39, 173, 129}, {92, 200, 99}, {170, 220, 50}, {253, 231, 37},
    };
    interp(stops, 9, t, out);
}

void svg_red_green(double t, char out[8]) {
    static const unsigned char stops[3][3] = {{240, 73, 110}, {235, 184, 57}, {12, 215, 159}};
    interp(stops, 3, t, out);
}

const char *svg_ink_on(const char *bg) {
    unsigned r = 0, g = 0, b = 0;
    if (sscanf(bg, "#%02x%02x%02x", &r, &g, &b) != 3) return "#000000";
    return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000000" : "#ffffff";
}
