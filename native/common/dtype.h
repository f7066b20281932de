/*
 * bf16 / f16 <-> f32 conversions, one definition for the CPU kernels and the CUDA kernels, so both libraries round
 * bit-identically (nearest even; NaN stays NaN; f16 overflow goes to infinity).
 */
#ifndef EE_DTYPE_H
#define EE_DTYPE_H

#include <stdint.h>
#include <string.h>

#include "common.h"

EE_HOST_DEVICE float ee_bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

EE_HOST_DEVICE uint32_t ee_f32_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

EE_HOST_DEVICE float ee_bf16_to_f32(uint16_t h) { return ee_bits_f32((uint32_t)h << 16); }

EE_HOST_DEVICE uint16_t ee_f32_to_bf16(float f) {
    uint32_t u = ee_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);                 /* round to nearest even */
}

EE_HOST_DEVICE float ee_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24 is exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return ee_bits_f32(sign | 0x7f800000u | (mant << 13));
    return ee_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round to nearest even, overflow to infinity (after F. Giesen's float_to_half_fast3_rtne). */
EE_HOST_DEVICE uint16_t ee_f32_to_f16(float f) {
    uint32_t u = ee_f32_bits(f), sign = (u >> 16) & 0x8000;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00 : 0x7c00)); /* >= 65536, inf, NaN */
    if (u < 0x38800000u) { /* f16 subnormal or zero: adding 0.5 puts the rounded bits at the bottom of the mantissa */
        return (uint16_t)(sign | (ee_f32_bits(ee_bits_f32(u) + 0.5f) - 0x3f000000u));
    }
    u += ((uint32_t)(15 - 127) << 23) + 0xfff + ((u >> 13) & 1); /* rebias; a mantissa carry rounds up the exponent */
    return (uint16_t)(sign | (u >> 13));
}

/* Element i of an array of dtype EE_F32 / EE_BF16 / EE_F16 as f32. Inlined with a constant dtype, the switch folds. */
EE_HOST_DEVICE float ee_load_f32(const void* p, int dtype, int64_t i) {
    switch (dtype) {
    case EE_BF16: return ee_bf16_to_f32(((const uint16_t*)p)[i]);
    case EE_F16: return ee_f16_to_f32(((const uint16_t*)p)[i]);
    default: return ((const float*)p)[i];
    }
}

/* Stores v as element i of an array of dtype EE_F32 / EE_BF16 / EE_F16. */
EE_HOST_DEVICE void ee_store_f32(void* p, int dtype, int64_t i, float v) {
    switch (dtype) {
    case EE_BF16: ((uint16_t*)p)[i] = ee_f32_to_bf16(v); break;
    case EE_F16: ((uint16_t*)p)[i] = ee_f32_to_f16(v); break;
    default: ((float*)p)[i] = v;
    }
}

#endif /* EE_DTYPE_H */
