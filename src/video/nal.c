/*
 * nal.c: the few bits of H.264 and HEVC NAL unit headers that the packet index needs, read
 * without decoding anything:
 *   - is the picture a reference? (H.264 nal_ref_idc; HEVC sub-layer non-reference NAL types)
 *   - is it a random-access point? (H.264 IDR or an I picture with a recovery-point SEI whose
 *     recovery_frame_cnt is 0; HEVC IDR/BLA/CRA)
 *   - HEVC TemporalId (a sub-layer non-reference picture is unreferenced only at the highest
 *     sub-layer present; probe.c resolves that over the whole stream).
 * Packets are length-prefixed (avcC/hvcC, MP4 and Matroska) or Annex B (start codes, MPEG-TS and
 * raw streams). Anything that does not parse is "unknown", which callers treat as a reference
 * frame, so a damaged or exotic packet can only cost speed, never correctness.
 */
#include "video/video.h"

#include <string.h>

int lv_nal_length_size(lv_nal_codec codec, const uint8_t *ed, int n) {
    if (!ed || n < 1) return 0;
    if (codec == LV_NAL_H264) {
        /* avcC: configurationVersion = 1 ... lengthSizeMinusOne in the low 2 bits of byte 4 */
        if (ed[0] == 1 && n >= 7) return (ed[4] & 3) + 1;
        return 0;
    }
    if (codec == LV_NAL_HEVC) {
        /* hvcC: configurationVersion = 1 (some muxers write 0), 23-byte header, lengthSizeMinusOne
         * in the low 2 bits of byte 21. Annex B extradata starts with 00 00 (0)1. */
        if (n >= 23 && !(ed[0] == 0 && ed[1] == 0 && (ed[2] == 1 || (ed[2] == 0 && ed[3] == 1))))
            return (ed[21] & 3) + 1;
        return 0;
    }
    return 0;
}

/* ---- bit reading for the one Exp-Golomb number we need ---- */

typedef struct bits {
    const uint8_t *p;
    int64_t n_bits, pos;
} bits;

static int bit_get(bits *b) {
    if (b->pos >= b->n_bits) return -1;
    int v = (b->p[b->pos >> 3] >> (7 - (b->pos & 7))) & 1;
    b->pos++;
    return v;
}

/* ue(v); -1 on error */
static int64_t bit_ue(bits *b) {
    int zeros = 0;
    for (;;) {
        int v = bit_get(b);
        if (v < 0 || zeros > 31) return -1;
        if (v) break;
        zeros++;
    }
    int64_t val = 1;
    for (int i = 0; i < zeros; i++) {
        int v = bit_get(b);
        if (v < 0) return -1;
        val = (val << 1) | v;
    }
    return val - 1;
}

/* Remove emulation-prevention bytes (00 00 03 -> 00 00) from at most cap output bytes. */
static int64_t unescape(const uint8_t *src, int64_t n, uint8_t *dst, int64_t cap) {
    int64_t o = 0;
    int zeros = 0;
    for (int64_t i = 0; i < n && o < cap; i++) {
        uint8_t c = src[i];
        if (zeros >= 2 && c == 3) {
            zeros = 0;
            continue;
        }
        dst[o++] = c;
        zeros = c == 0 ? zeros + 1 : 0;
    }
    return o;
}

/* H.264 SEI NAL payload (after the header byte): 1 if it holds a recovery point with
 * recovery_frame_cnt == 0 (decoding from here is exact at once). */
static int h264_sei_exact_recovery(const uint8_t *p, int64_t n) {
    uint8_t buf[512];
    int64_t m = unescape(p, n, buf, (int64_t)sizeof(buf));
    int64_t i = 0;
    while (i < m) {
        if (buf[i] == 0x80 && i + 1 >= m) break; /* rbsp trailing bits */
        int64_t type = 0, size = 0;
        while (i < m && buf[i] == 0xFF) { type += 255; i++; }
        if (i >= m) break;
        type += buf[i++];
        while (i < m && buf[i] == 0xFF) { size += 255; i++; }
        if (i >= m) break;
        size += buf[i++];
        if (type == 6) {
            bits b = {buf + i, (LV_MIN(size, m - i)) * 8, 0};
            int64_t cnt = bit_ue(&b);
            return cnt == 0;
        }
        i += size;
    }
    return 0;
}

typedef struct nal_acc {
    lv_nal_codec codec;
    int n_vcl;
    int n_vcl_ref;       /* VCL NAL units that are (or may be) references */
    bool idr, recovery_sei, cra, rasl, all_slnr, unknown_vcl;
    int tid;
} nal_acc;

static void nal_one(nal_acc *a, const uint8_t *nal, int64_t n) {
    if (n < 1) return;
    if (a->codec == LV_NAL_H264) {
        int forbidden = nal[0] >> 7, ref_idc = (nal[0] >> 5) & 3, type = nal[0] & 31;
        if (forbidden) {
            a->unknown_vcl = true;
            return;
        }
        if (type >= 1 && type <= 5) {
            a->n_vcl++;
            if (ref_idc) a->n_vcl_ref++;
            if (type == 5) a->idr = true;
        } else if (type == 6) {
            if (h264_sei_exact_recovery(nal + 1, n - 1)) a->recovery_sei = true;
        } else if (type == 20 || type == 21) {
            a->unknown_vcl = true; /* SVC/MVC slice extensions: be conservative */
        }
        return;
    }
    /* HEVC */
    if (n < 2) {
        a->unknown_vcl = true;
        return;
    }
    int forbidden = nal[0] >> 7, type = (nal[0] >> 1) & 63;
    int layer = ((nal[0] & 1) << 5) | (nal[1] >> 3), tid = (nal[1] & 7) - 1;
    if (forbidden || tid < 0) {
        a->unknown_vcl = true;
        return;
    }
    if (type > 31) return; /* parameter sets, SEI, AUD ... */
    if (layer != 0) {
        a->unknown_vcl = true;
        return;
    }
    a->n_vcl++;
    if (a->tid < 0 || tid < a->tid) a->tid = tid;
    bool slnr = type <= 14 && (type & 1) == 0;
    if (!slnr) {
        a->all_slnr = false;
        a->n_vcl_ref++;
    }
    if (type >= 16 && type <= 20) a->idr = true; /* BLA_W_LP, BLA_W_RADL, BLA_N_LP, IDR_W_RADL, IDR_N_LP */
    if (type == 21) a->cra = true;
    if (type == 8 || type == 9) a->rasl = true;
    if (type >= 22 && type <= 31) a->unknown_vcl = true; /* reserved */
}

lv_nal_info lv_nal_classify(lv_nal_codec codec, int length_size, const uint8_t *data, int64_t size) {
    lv_nal_info info = {LV_NAL_KIND_UNKNOWN, 0, false, false};
    if (codec == LV_NAL_NONE || !data || size <= 0) return info;
    nal_acc a = {0};
    a.codec = codec;
    a.all_slnr = true;
    a.tid = -1;
    if (length_size >= 1 && length_size <= 4) {
        int64_t i = 0;
        while (i + length_size <= size) {
            uint64_t len = 0;
            for (int k = 0; k < length_size; k++) len = (len << 8) | data[i + k];
            i += length_size;
            if (len > (uint64_t)(size - i)) {
                a.unknown_vcl = true; /* truncated or not length-prefixed after all */
                break;
            }
            nal_one(&a, data + i, (int64_t)len);
            i += (int64_t)len;
        }
    } else {
        /* Annex B: NAL units follow 00 00 01 */
        int64_t i = 0, start = -1;
        while (i + 2 < size) {
            if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1) {
                if (start >= 0) {
                    int64_t end = i;
                    while (end > start && data[end - 1] == 0) end--;
                    nal_one(&a, data + start, end - start);
                }
                i += 3;
                start = i;
                continue;
            }
            i++;
        }
        if (start >= 0 && start < size) nal_one(&a, data + start, size - start);
    }
    if (a.n_vcl == 0 || a.unknown_vcl) return info; /* unknown: treated as a reference */
    info.tid = a.tid < 0 ? 0 : a.tid;
    info.hevc_rasl = a.rasl;
    if (codec == LV_NAL_H264) {
        if (a.idr) info.kind = LV_NAL_KIND_IDR;
        else if (a.recovery_sei && a.n_vcl_ref > 0) info.kind = LV_NAL_KIND_RECOVERY;
        else info.kind = a.n_vcl_ref ? LV_NAL_KIND_REF : LV_NAL_KIND_NONREF;
    } else {
        info.hevc_slnr = a.all_slnr;
        if (a.idr) info.kind = LV_NAL_KIND_IDR;
        else if (a.cra) info.kind = LV_NAL_KIND_RECOVERY;
        else info.kind = a.all_slnr ? LV_NAL_KIND_NONREF : LV_NAL_KIND_REF;
    }
    return info;
}
