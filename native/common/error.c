/* The thread-local last error of either library, and the message for an index a kernel cannot use. */
#include <stdarg.h>
#include <stdio.h>

#include "common.h"

static _Thread_local char last_error[1024];

int ee_fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return 1;
}

EE_API const char* ee_last_error(void) { return last_error; }

static const struct {
    const char* kernel;
    const char* index;
    const char* outside; /* printf format of the bound */
} index_errors[EE_INDEX_KINDS] = {
    [EE_BAD_EMBEDDING_FWD_ID] = {"ee_embedding_fwd", "id", "the table's %d rows"},
    [EE_BAD_EMBEDDING_BWD_ID] = {"ee_embedding_bwd", "id", "the table's %d rows"},
    [EE_BAD_ATTENTION_SEQ] = {"ee_attention_fwd", "seq", "the cache's %d sequences"},
    [EE_BAD_ATTENTION_POS] = {"ee_attention_fwd", "pos", "the cache's %d positions"},
    [EE_BAD_KV_SEQ] = {"ee_kv_write", "seq", "the cache's %d sequences"},
    [EE_BAD_KV_POS] = {"ee_kv_write", "pos", "the cache's %d positions"},
    [EE_BAD_GATHER_INDEX] = {"ee_gather_rows", "index", "src's %d rows"},
    [EE_BAD_TARGET] = {"ee_linear_cross_entropy", "target", "the vocabulary of %d"},
};

int ee_fail_index(int kind, int64_t row, int32_t value, int32_t bound, const char* note) {
    if (kind <= EE_INDEX_OK || kind >= EE_INDEX_KINDS) return ee_fail("unknown index error %d at row %lld%s", kind, (long long)row, note);
    char outside[64];
    snprintf(outside, sizeof outside, index_errors[kind].outside, bound);
    return ee_fail("%s: row %lld has %s %d, outside %s%s", index_errors[kind].kernel, (long long)row, index_errors[kind].index, value, outside, note);
}

int ee_cast_check(const void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n) {
    if (!ee_is_float_dtype(dst_dtype) || !ee_is_float_dtype(src_dtype))
        return ee_fail("ee_cast: unsupported dtypes %d -> %d", src_dtype, dst_dtype);
    if (n < 0) return ee_fail("ee_cast: negative count");
    if (n > 0 && (!dst || !src)) return ee_fail("ee_cast: null pointer");
    return 0;
}
