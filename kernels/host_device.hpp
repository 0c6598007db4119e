#pragma once
// RAZERQ_HD marks a function for both the host and the device: __host__ __device__ under nvcc,
// plain inline elsewhere, so kernels' bit helpers and reference arithmetic run in CPU tests as
// they run on the GPU. Includes no CUDA header.
#ifdef __CUDACC__
#define RAZERQ_HD __host__ __device__ __forceinline__
#else
#define RAZERQ_HD inline
#endif
