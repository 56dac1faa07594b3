// kernels/cuda/check.h — every CUDA runtime, cuBLAS and NCCL call goes through a check that names
// the failing call with its file and line.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace fe::cuda {

[[noreturn]] void fail_call(const char* call, const char* error, const char* file, int line);
// Number of usable GPUs; 0 when there is no driver or no device (never throws).
int device_count();

}  // namespace fe::cuda

#define FE_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t fe_err_ = (call);                                                        \
    if (fe_err_ != cudaSuccess)                                                          \
      ::fe::cuda::fail_call(#call, cudaGetErrorString(fe_err_), __FILE__, __LINE__);     \
  } while (0)
