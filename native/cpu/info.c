/*
 * Library information and the process-wide runtime: CPU feature detection, the optional OpenBLAS found with dlopen,
 * the worker thread count and per-thread scratch buffers (the last error is in common/error.c).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdlib.h>
#include <strings.h>

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

/* Widest vectors of an OpenBLAS core (its openblas_get_corename()): 512 for the AVX-512 ones, 256 for the AVX2 ones,
 * 128 for the older x86 ones, 0 for a name not known here (then nothing is assumed). */
static int blas_core_width(const char* core) {
    static const char* const avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char* const avx2[] = {"haswell", "zen", "skylake"};
    static const char* const older[] = {"sandybridge", "nehalem", "core2", "penryn", "dunnington", "prescott", "atom", "barcelona",
        "bobcat", "bulldozer", "piledriver", "steamroller", "excavator", "opteron", "nano", "katmai", "coppermine", "northwood", "banias"};
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++) if (strcasecmp(core, avx512[i]) == 0) return 512;
    for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++) if (strcasecmp(core, avx2[i]) == 0) return 256;
    for (size_t i = 0; i < sizeof older / sizeof older[0]; i++) if (strcasecmp(core, older[i]) == 0) return 128;
    return 0;
}

/* EETUNE_BLAS names a library to try first; EETUNE_BLAS=none disables BLAS (to test the no-BLAS configuration).
 * OpenBLAS may run kernels older than the CPU's: OPENBLAS_CORETYPE=Haswell (set in some images and CI machines) on an
 * AVX-512 CPU. There the built-in AVX-512 GEMM is the faster one (2-core Zen 5 EPYC, 2 threads, median of 5:
 * 1024 x 32000 x 288 348 vs 138 GFLOP/s for OpenBLAS on our pool, 2048^3 321 vs 130; `eecpu_gemmbench 2 blas` with
 * OPENBLAS_CORETYPE=Haswell), so the automatic path takes it; the BLAS path can still be chosen. Only that case is
 * measured: an AVX2 CPU with a pre-AVX2 OpenBLAS core keeps OpenBLAS. */
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
        const char* (*corename)(void) = (const char* (*)(void))dlsym(lib, "openblas_get_corename");
        const char* core = corename ? corename() : 0;
        const int width = core ? blas_core_width(core) : 0;
        cpu.blas_older = cpu.avx512 && width > 0 && width < 512;
        if (cpu.blas_set_num_threads) cpu.blas_set_num_threads(1); /* our pool runs its slices (internal.h) */
        return; /* the library stays loaded for the life of the process */
    }
}

/* A positive thread count from the environment variable, or 0 when unset or not a number. OMP_NUM_THREADS may be a
 * list (one count per nesting level): its first entry is the one that counts. */
static int env_threads(const char* name) {
    const char* v = getenv(name);
    if (!v || !*v) return 0;
    char* end;
    long n = strtol(v, &end, 10);
    return end != v && (*end == 0 || *end == ',') && n > 0 ? (int)(n < EE_MAX_THREADS ? n : EE_MAX_THREADS) : 0;
}

/* The CPUs this process may run on (taskset, cgroup cpusets), else the online ones. */
static int cpus_allowed(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void cpu_init(void) {
#if EE_X86
    __builtin_cpu_init();
    int simd = !env_flag("EETUNE_NO_AVX2");
    cpu.avx2 = simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    cpu.avx512 = cpu.avx2 && !env_flag("EETUNE_NO_AVX512") && __builtin_cpu_supports("avx512f");
    cpu.avx512vnni = cpu.avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#endif
    load_blas();
    /* EETUNE_NUM_THREADS, else OMP_NUM_THREADS (which configured the OpenMP pool before ours), else every CPU */
    int n = env_threads("EETUNE_NUM_THREADS");
    if (!n) n = env_threads("OMP_NUM_THREADS");
    if (!n) n = cpus_allowed();
    default_threads = n < EE_MAX_THREADS ? n : EE_MAX_THREADS;
    num_threads = default_threads;
}

const ee_cpu* ee_cpu_get(void) {
    pthread_once(&cpu_once, cpu_init);
    return &cpu;
}

/* Below this many operations a parallel region costs more than it saves. An empty region on the pool costs about
 * 0.2-0.6 us with the workers still polling and a futex wake-up (1-2 us) when they sleep (eecpu_poolbench, 2 threads,
 * on a shared 2-core machine); 32768 operations take 10-30 us serially, so a region pays for itself well before that
 * on a quiet machine but may not on a busy one, where a second thread often gets no core. Kept until eecpu_poolbench's
 * break-even is measured on a quiet machine. */
#define PARALLEL_MIN_WORK 32768.0

int ee_num_threads(void) {
    ee_cpu_get();
    return num_threads;
}

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
    return (c->avx2 ? 1 : 0) | (c->sgemm ? 2 : 0) | (c->avx512 ? 4 : 0) | (c->blas_older ? 16 : 0) | (c->avx512vnni ? 32 : 0);
}

EE_API int32_t ee_device_count(void) { return 1; }

EE_API int32_t ee_set_num_threads(int32_t n) {
    const ee_cpu* c = ee_cpu_get();
    num_threads = n <= 0 ? default_threads : n < EE_MAX_THREADS ? n : EE_MAX_THREADS;
    /* OpenBLAS stays single-threaded whatever the count (set again in case the host changed it) */
    if (c->blas_set_num_threads) c->blas_set_num_threads(1);
    return num_threads;
}

EE_API int32_t ee_synchronize(void) { return 0; }
