/*
 * unicode.c: UTF-8 decoding and encoding with llama.cpp's exact leniency, and the codepoint
 * flag lookup (binary search over the generated ranges, with a table for ASCII).
 */
#include "tokenizer/unicode.h"

uint16_t lv_cpt_flags(uint32_t cpt) {
    if (cpt >= 0x110000) return LV_CPT_UNDEFINED;
    /* largest range start <= cpt */
    int lo = 0, hi = lv_cpt_n_ranges - 1;
    if (cpt < 0x80) {
        /* the ASCII ranges are the first entries: a short linear scan is cheaper */
        int i = 0;
        while (i + 1 < lv_cpt_n_ranges && lv_cpt_ranges[i + 1].start <= cpt) i++;
        return lv_cpt_ranges[i].flags;
    }
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (lv_cpt_ranges[mid].start <= cpt) lo = mid;
        else hi = mid - 1;
    }
    return lv_cpt_ranges[lo].flags;
}

uint32_t lv_utf8_decode(const char *str, size_t n, size_t *off) {
    const unsigned char *s = (const unsigned char *)str + *off;
    size_t left = n - *off;
    unsigned char c = s[0];
    if (c < 0x80) {
        *off += 1;
        return c;
    }
    if ((c & 0x40) == 0) goto bad; /* continuation byte */
    if ((c & 0x20) == 0) {
        if (left < 2 || (s[1] & 0xC0) != 0x80) goto bad;
        *off += 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if ((c & 0x10) == 0) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) goto bad;
        *off += 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    if ((c & 0x08) == 0) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) goto bad;
        *off += 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
bad:
    *off += 1;
    return LV_CPT_REPLACEMENT;
}

int lv_utf8_encode(uint32_t cpt, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cpt < 0x80) {
        o[0] = (unsigned char)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cpt >> 6));
        o[1] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cpt >> 12));
        o[1] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    if (cpt <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cpt >> 18));
        o[1] = (unsigned char)(0x80 | ((cpt >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 4;
    }
    return 0;
}

/* Strict validity of the (possibly incomplete) sequence s[0..n) as the start of one character:
 * 1 = complete and valid, 0 = a valid prefix that needs more bytes, -1 = invalid. */
static int utf8_check(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c < 0xC2) return -1;
    if (c < 0xE0) need = 2;
    else if (c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return -1;
    for (size_t i = 1; i < need; i++) {
        if (i >= n) return 0;
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (s[i] < l || s[i] > h) return -1;
    }
    return 1;
}

size_t lv_utf8_complete_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    /* only the last 3 bytes can start an incomplete sequence */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; i++) {
        if (s[i] >= 0xC2 && s[i] < 0xF5 && utf8_check(s + i, n - i) == 0) return i;
    }
    return n;
}
