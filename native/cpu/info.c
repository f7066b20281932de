/*
 * Library information and the process-wide runtime: CPU feature detection, the optional OpenBLAS found with dlopen,
 * the worker thread count and per-thread scratch buffers (the last error is in common/error.c).
 */
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

/* ---- CPU features and BLAS --------------------------------------------------------------------------------------- */

static ee_cpu cpu;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static int default_threads;
static _Atomic int num_threads;

__attribute__((unused)) static int env_flag(const char* name) { /* unused on non-x86 builds */
    const char* v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* EETUNE_BLAS names a library to try first; EETUNE_BLAS=none disables BLAS (to test the no-BLAS configuration). */
static void load_blas(void) {
    const char* env = getenv("EETUNE_BLAS");
    if (env && strcmp(env, "none") == 0) return;
    const char* names[] = {env, "libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libcblas.so.3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!names[i] || !*names[i]) continue;
        void* lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) continue;
        ee_sgemm_fn sgemm = (ee_sgemm_fn)dlsym(lib, "cblas_sgemm");
        if (!sgemm) {
            dlclose(lib);
            continue;
        }
        cpu.sgemm = sgemm;
        cpu.blas_set_num_threads = (void (*)(int))dlsym(lib, "openblas_set_num_threads");
        return; /* the library stays loaded for the life of the process */
    }
}

static void cpu_init(void) {
#if EE_X86
    __builtin_cpu_init();
    int simd = !env_flag("EETUNE_NO_AVX2");
    cpu.avx2 = simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    cpu.avx512 = cpu.avx2 && !env_flag("EETUNE_NO_AVX512") && __builtin_cpu_supports("avx512f");
#endif
    load_blas();
    default_threads = omp_get_max_threads(); /* honours OMP_NUM_THREADS */
    num_threads = default_threads;
    if (cpu.blas_set_num_threads) cpu.blas_set_num_threads(default_threads);
}

const ee_cpu* ee_cpu_get(void) {
    pthread_once(&cpu_once, cpu_init);
    return &cpu;
}

/* Below this many operations a parallel region costs more than it saves (fork/join is a few microseconds). */
#define PARALLEL_MIN_WORK 32768.0

int ee_threads_for(double work) {
    ee_cpu_get();
    return work < PARALLEL_MIN_WORK ? 1 : num_threads;
}

/* ---- per-thread scratch ---------------------------------------------------------------------------------------- */

typedef struct {
    void* ptr[EE_SCRATCH_SLOTS];
    size_t bytes[EE_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_release(void* p) {
    scratch_set* s = p;
    for (int i = 0; i < EE_SCRATCH_SLOTS; i++) free(s->ptr[i]);
    free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_release) == 0; }

/* After an unload the key's destructor would point into unmapped code, so the key goes away with the library. */
__attribute__((destructor)) static void scratch_fini(void) {
    if (scratch_key_ok) pthread_key_delete(scratch_key);
}

void* ee_scratch(int slot, size_t bytes) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok) return 0;
    scratch_set* s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return 0;
        }
    }
    if (s->bytes[slot] < bytes) {
        free(s->ptr[slot]);
        s->bytes[slot] = 0;
        s->ptr[slot] = ee_alloc_host(bytes);
        if (!s->ptr[slot]) return 0;
        s->bytes[slot] = bytes;
    }
    return s->ptr[slot];
}

/* ---- exported information ------------------------------------------------------------------------------------- */

EE_API int32_t ee_abi_version(void) { return EE_ABI_VERSION; }

EE_API int32_t ee_noop(int32_t x) { return x + 1; }

EE_API int32_t ee_features(void) {
    const ee_cpu* c = ee_cpu_get();
    return (c->avx2 ? 1 : 0) | (c->sgemm ? 2 : 0) | (c->avx512 ? 4 : 0);
}

EE_API int32_t ee_device_count(void) { return 1; }

EE_API int32_t ee_set_num_threads(int32_t n) {
    const ee_cpu* c = ee_cpu_get();
    num_threads = n > 0 ? n : default_threads;
    if (c->blas_set_num_threads) c->blas_set_num_threads(num_threads);
    return num_threads;
}

EE_API int32_t ee_synchronize(void) { return 0; }
