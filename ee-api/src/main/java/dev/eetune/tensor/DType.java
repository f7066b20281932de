package dev.eetune.tensor;

import java.util.Locale;

/**
 * Element types; {@link #code()} is the dtype code of the native ABI (EE_F32 ...).
 * Immutable: thread-safe.
 */
public enum DType {
    F32(4, 0),
    BF16(2, 1),
    F16(2, 2),
    I32(4, 3);

    private final int bytes;
    private final int code;

    DType(int bytes, int code) {
        this.bytes = bytes;
        this.code = code;
    }

    public int bytes() { return bytes; }

    public int code() { return code; }

    public boolean isFloat() { return this != I32; }

    /** Parses names as written in safetensors headers and configs ("F32", "bf16", "float16", "bfloat16", ...). */
    public static DType parse(String name) {
        switch (name.toLowerCase(Locale.ROOT)) {
            case "f32": case "float32": case "float": return F32;
            case "bf16": case "bfloat16": return BF16;
            case "f16": case "float16": case "half": return F16;
            case "i32": case "int32": return I32;
            default: throw new IllegalArgumentException("unsupported dtype '" + name + "' (supported: F32, BF16, F16, I32)");
        }
    }

    /** bf16 bits to float (exact). */
    public static float bf16ToFloat(short bits) { return Float.intBitsToFloat((bits & 0xffff) << 16); }

    /** float to bf16 bits, round to nearest even (NaN stays NaN). */
    public static short floatToBf16(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7fffffff) > 0x7f800000) return (short) ((x >>> 16) | 0x40);
        return (short) ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16);
    }

    /** IEEE half bits to float (exact, subnormals included). */
    public static float f16ToFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h & 0x8000) << 16, exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
        if (exp == 0x1f) return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        if (exp == 0) {
            float v = mant * 0x1p-24f;
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    /** float to IEEE half bits, round to nearest even, overflow to infinity. */
    public static short floatToF16(float f) {
        int x = Float.floatToRawIntBits(f);
        int sign = (x >>> 16) & 0x8000;
        int abs = x & 0x7fffffff;
        if (abs > 0x7f800000) return (short) (sign | 0x7e00);
        if (abs >= 0x477ff000) return (short) (sign | 0x7c00); // rounds to >= 65520: infinity
        if (abs < 0x38800000) { // subnormal half (or zero): round |f| / 2^-24 to an integer, ties to even
            float v = Float.intBitsToFloat(abs) * 0x1p24f;
            return (short) (sign | (int) Math.rint(v));
        }
        int e = (abs >>> 23) - 112, m = abs & 0x7fffff;
        int h = (e << 10) | (m >>> 13);
        int rest = m & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1)) h++;
        return (short) (sign | h);
    }
}
