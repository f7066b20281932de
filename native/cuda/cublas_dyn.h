/*
 * The few cuBLAS entry points libeecuda uses, declared here because no cuBLAS headers are needed (or present) at
 * build time: the library is found with dlopen at run time. Values from NVIDIA's cuBLAS documentation
 * (cublas_api.h / library_types.h): enums are C ints.
 */
#ifndef EE_CUBLAS_DYN_H
#define EE_CUBLAS_DYN_H

#include <cuda_runtime.h>

typedef struct cublasContext* cublasHandle_t;
typedef int cublasStatus_t; /* 0 = CUBLAS_STATUS_SUCCESS */

enum {
    EE_CUBLAS_STATUS_SUCCESS = 0,
    EE_CUBLAS_OP_N = 0,
    EE_CUBLAS_OP_T = 1,
    EE_CUDA_R_32F = 0,  /* cudaDataType */
    EE_CUDA_R_16F = 2,
    EE_CUDA_R_16BF = 14,
    EE_CUBLAS_COMPUTE_32F = 68,           /* cublasComputeType_t: fp32 accumulation, fp32 products */
    EE_CUBLAS_COMPUTE_32F_FAST_TF32 = 77, /* opt-in for f32 inputs (EETUNE_CUDA_TF32=1) */
    EE_CUBLAS_GEMM_DEFAULT = -1,          /* cublasGemmAlgo_t */
};

typedef cublasStatus_t (*ee_cublasCreate_fn)(cublasHandle_t*);
typedef cublasStatus_t (*ee_cublasDestroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*ee_cublasSetStream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*ee_cublasGetVersion_fn)(cublasHandle_t, int*);
typedef const char* (*ee_cublasGetStatusString_fn)(cublasStatus_t);
typedef cublasStatus_t (*ee_cublasGemmEx_fn)(cublasHandle_t handle, int transa, int transb, int m, int n, int k, const void* alpha,
                                             const void* A, int Atype, int lda, const void* B, int Btype, int ldb, const void* beta,
                                             void* C, int Ctype, int ldc, int computeType, int algo);

#endif /* EE_CUBLAS_DYN_H */
