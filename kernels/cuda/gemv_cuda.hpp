#pragma once
// Fused-dequant GEMV / small-batch GEMM on CUDA: y[M, N] = x[M, K] . W^T for a packed 4- or
// 3-bit tensor W [N, K] (kernels/cuda/gemv.cu). Host API; includes no CUDA header.
//
// One kernel template over the registry's scale kinds and code widths (4-bit: razer4, int4
// sym/asym, fp4, nf4, mxfp4, mxfp4-razer, nvfp4, nvfp4-razer; 3-bit: razer3, int3 sym/asym,
// fp3), reading the packed checkpoint layout as uploaded (little-endian code bitstreams,
// formats/SPEC.md, as upload() rearranges them for this kernel, gemv_layout.hpp: each 8-code
// chunk's codes in pair order; with group % 128 == 0, and for the NV kinds' tensors of more
// rows than two 16-row tiles per SM, the chunks of each 128-column block permuted for the x
// loads; rows that are whole 16-row tiles stored tile by tile). Tensor cores
// (mma.sync m16n8k16, fp16 x fp16 -> fp32) do the products for M = 1 .. 16; the CUDA cores
// decode each weight once, by bit manipulation where the grid allows, else through a table of
// the format's values in shared memory.
//
// What it computes: each weight becomes fp16(value x inner scale), where the inner scale is the
// group's scale when it is an fp16 (int, fp4, nf4, razer), 2^e (MX kinds), or the E4M3/E3M3 group
// scale without the fp32 tensor scale (NV kinds), which multiplies the fp32 sums at the end. So for
// every format except nf4 the weights used are exactly the float64 reference rounded once to fp16
// (NV kinds: exactly the reference before the tensor scale); nf4's table values are rounded to fp16
// first (its grid is not fp16-exact), within one fp16 ulp. The exception is POST (set_gemv_post,
// gemv_post_scaled: the nibble decoder (razer3, fp3, int3) and razer4's two-table decoder at M <= 8
// and K > 4096 by default, groups of 128 or more): the weights are the float64 reference exactly
// (value x 2^-14 in fp16, the scale and 2^14 applied to each 128-column block's fp32 sums). The other
// exception is the int8 products (razer3, fp3, int3 by default at M = 1 where the bulk ring runs;
// razer4 with groups of 128 or more at M = 1; set_gemv_int8, gemv_int8_products, below): the
// weights are the reference exactly, as under POST, and x is used as q 2^-e per 128-column block,
// q = round(x 2^e) a b-bit integer (gemv_int8_x_bits: 16 for the nibbles, 15 for razer4) with e
// fixed by the block's largest |x|: exact for every x in that largest one's binade or the b - 12
// below it, else off by at most 2^(1 - b) max |x| of the block (an x with inf or NaN makes y NaN).
// Accumulation in fp32 (int32, exact, for the int8 products within a block); y is rounded once to fp16.
#include <cstdint>
#include <string>

#include "kernels/cuda/dequant_cuda.hpp"

namespace razerq::kernels {

// Largest M (rows of x) one call takes.
inline constexpr int kGemvMaxM = 16;

// Whether gemv_fp16_cuda takes this tensor; when not, why (then dequantize + cuBLAS). Needs
// 4-bit codes (3-bit: fp16-scale formats), cols % 128 == 0 (upload() then gives the codes the
// pair order), a power-of-two group of at least 16, and group scales representable as fp16
// (MX kinds: 2^-24 .. 2^15; upload() records it).
bool gemv_supported(const DeviceTensor& w, std::string* why = nullptr);

// y (fp16, [M, w.rows], row stride w.rows) = x (fp16, [M, w.cols], row stride w.cols) . W^T,
// 1 <= M <= kGemvMaxM. x must be 16-byte aligned. Asynchronous on `stream`; argument errors
// (unsupported tensor, bad M or alignment) throw razerq::Error here.
void gemv_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* y, void* stream = nullptr);

// The gate/up product with SiLU * up in its epilogue: w = [gate; up] (concat_rows of two [F, K]
// tensors, F % 8 == 0), act (fp16, [M, F] dense) = fp16(fp16(silu(g)) * u) where g, u are the
// fp16 products' elements, silu(g) = g / (1 + exp(-g)) in fp32: what gemv_fp16_cuda into y
// [M, 2 F] followed by silu_mul_cuda(kFp16, y, y + F, 2 F, M, F, act) computes, bit for bit
// where the plain product runs one 16-row tile per block and the split tail splits neither's
// tiles. (The epilogue always runs one tile per block and one stage; each tile takes 8 gate rows
// and their 8 up rows instead of 16 consecutive rows, so where the split tail applies,
// set_gemv_split, it may split other rows' sums than the plain product does, and two tiles per
// block, set_gemv_tiles, add a row's blocks of K in another order: the last bits may differ.)
// One launch and no [M, 2 F] intermediate. Same arguments and errors as gemv_fp16_cuda;
// gemv_silu_mul_supported says whether w qualifies.
bool gemv_silu_mul_supported(const DeviceTensor& w, std::string* why = nullptr);
void gemv_silu_mul_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* act, void* stream = nullptr);

// The decode step's residual add + RMSNorm in its products' epilogues (eval's forward_static,
// ModelOptions::norm_epilogue), so that no norm kernel stands between two products. For x rows
// m < M of length n (n = the producer's w.rows = the consumer's w.cols):
// - gemv_add_norm_fp16_cuda (the o and down products): y = x W^T as gemv_fp16_cuda rounds it (not
//   stored), then h[m] = fp16(h[m] + y[m]) (the residual stream, in place), x_out[m] =
//   fp16(h[m] * norm_w * x_scale), and per 16-row tile j of W the fp32 sum of h[m]^2 over its rows
//   into slots[m * gemv_norm_slot_stride(n) + j] (the stride's padding zeroed): add_rms_norm_cuda's
//   arithmetic up to the sum of squares, the normalisation left to the next product.
// - gemv_normed_fp16_cuda (q/k/v): y = fp16(s_m * (x W^T)_fp32 / x_scale), s_m = rsqrt(sum of the
//   m-th row's slots / n + eps), the slots summed in a fixed order; x is the x_out above.
//   gemv_normed_silu_mul_fp16_cuda (gate/up): the same sums through the SiLU epilogue (as
//   gemv_silu_mul_fp16_cuda, gate and up each scaled so before rounding).
// Against add_rms_norm_cuda followed by the plain product, which round x = fp16(w fp16(h s)) before
// the product, the normalisation enters after it: y differs in the last bits (tests bound it).
// x_scale, a power of two, keeps x_out finite (eval takes 2^-ceil(log2 max |norm_w|) for weights
// above 1, else 1). The kernels run one stage and one tile per block (gemv_normed_fp16_cuda: one or
// two, as set_gemv_tiles and the plain product's rule choose); M <= kGemvNormMaxM and M x
// gemv_norm_slot_stride(n) <= kGemvNormSlots (gemv_norm_supported). slots 16-byte aligned; a
// producer's slots are read by the next normed products, which must be launched after it on the
// same stream (or after it completes) and before the next producer writes them.
inline constexpr int kGemvNormMaxM = 8;
inline constexpr int kGemvNormSlots = 1024;  // floats of shared memory in a normed product's block
int64_t gemv_norm_slot_stride(int64_t n);    // ceil(n / 16) rounded up to a multiple of 4
bool gemv_norm_supported(const DeviceTensor& w, int64_t M, int64_t n, std::string* why = nullptr);
void gemv_add_norm_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, uint16_t* h, const uint16_t* norm_w,
                             float x_scale, uint16_t* x_out, float* slots, void* stream = nullptr);
void gemv_normed_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, const float* slots, float eps,
                           float x_scale, uint16_t* y, void* stream = nullptr);
void gemv_normed_silu_mul_fp16_cuda(const DeviceTensor& w, const uint16_t* x, int64_t M, const float* slots, float eps,
                                    float x_scale, uint16_t* act, void* stream = nullptr);

// How the kernel turns codes into fp16 weights. Bit decoders: int4 and int3 by the 0x6400 magic
// (and, for int3, its kin 0x5800 / 0x4c00), the E2M1 formats (RaZeR included) by building the fp16
// high bytes of four codes at a time (RaZeR: the special value patched in there; 4-bit RaZeR
// (razer4, mxfp4-razer, nvfp4-razer) re-encoded at upload, DeviceTensor::razer_xor: looked up in
// two byte tables instead), fp3 by placing the code's bits into an fp16, razer3 (and fp3 and int3,
// which upload() stores as nibbles too: DeviceTensor::nib3) by a PRMT lookup in an 8-byte table of
// the values' high bytes held in registers (int3 asym: one per zero point; the RaZeR kinds' special
// values x 2^-14 must be fp16 with a zero low byte, as the defaults +-5, +-8, +-3, +-6 are, else
// the table); nf4 (4-bit grids no bit decoder takes, with plain fp16 scales, which upload() keeps
// in column order: DeviceTensor::pair_table) by a pair table: a byte of two codes looks up its two
// fp16 values at once in shared memory (256 entries, 32 copies); the table: a shared-memory table
// of the format's 16 (8) values (any grid). kAuto: bits wherever the grid allows, the pair table
// for nf4 (both are faster than the table on the H100 for every format, bench/gemv.md); kTable /
// kBits force one (kBits: the bit decoder or the pair table where the tensor has one). Every
// choice gives the same weights and the same y bit for bit (tests; with the scale on the weights,
// set_gemv_post(1), for the 3-bit formats and razer4). With the stage count (blocks of codes in flight per
// warp: 1 or 2; 3 = the bulk ring wherever the tensor allows it: 3-bit bit decoders, fp16 scales in
// groups of 128, tiled rows, where a producer warp keeps four steps of the block's codes in shared
// memory, y the same as 1's bit for bit; 0 = automatic: the ring at M = 1 with K >= 8192 on grids
// of more than two 16-row tiles per SM, else 1) these are process-wide settings for tests and
// benchmarks.
enum class GemvDecoder { kAuto, kTable, kBits };
void set_gemv_decoder(GemvDecoder d);
void set_gemv_stages(int stages);
// 16-row tiles per block: 1, 2, or 0 = automatic (two for M <= 8 and K <= 4096 where one tile per
// block would take between one and two waves of resident blocks, except for the RaZeR kinds'
// E2M1 decoder and int4-asym, which stay at one; the int8 products take two, each warp 32
// rows, y the same bit for bit as with one). Tiles change
// which warps add which blocks of K, so y may differ in the last bits between settings; every
// setting stays within the reference's bound. Process-wide, for tests and benchmarks.
void set_gemv_tiles(int tiles);
// The split tail (blocks of one tile, or the int8 products' two; gemv.cu split_plan): 0 =
// automatic (every tile of a grid of at most two tiles per SM with K >= 8192 and M <= 8;
// otherwise the last, partial wave of
// a multi-wave grid is split into halves of K when it holds at most half a wave of tiles, for
// 3-bit codes and for 4-bit codes with M > 4; the
// halves are a cluster pair, the second adding its sums into the first's shared memory, the first
// adding them after its own: deterministic), 1 = never, 2 = every tile (tests). Splitting changes
// the fp32 summation order, so y may differ in the last bits; every setting stays within the
// reference's bound. Process-wide, for tests and benchmarks.
void set_gemv_split(int mode);
// Where the 3-bit bit decoders (the nibble lookups, fp3's bits on the bitstream) and razer4's
// two-table decoder apply the group's scale: to every decoded weight pair in fp16 (PRE: the weights
// are fp16(value x scale), as for the other formats), or, for groups of 128 or more, to each
// 128-column block's fp32 sums (POST: the weights are value x scale exactly, so y differs from PRE's
// in the last bits). 0 = automatic (POST for the nibbles and razer4 at M <= 8 and K > 4096, and for
// the 3-bit ones where scale x 2^14 is not an fp16, i.e. inner scales of 4 or more), 1 = never
// (PRE, else the table decoder), 2 = wherever the group allows. Process-wide, for tests and
// benchmarks.
void set_gemv_post(int mode);
// The int8 tensor-core products (mma m16n8k32, int32 sums): the codes looked up as int8 values four
// per instruction, x split per 128-column block into two int8 parts of a fixed-point value (what it
// computes: above). The nibbles (razer3, fp3, int3) where their decoder would run in the bulk ring
// at M = 1 and the special values times a power of two 2^0 .. 2^7 are all integers in [-128, 127]
// (the defaults are); razer4's two-table tensors (fp16 scales, groups of 128 or more) at M = 1 in
// the register pipeline, the epilogues' kernels included (every special value the registry allows,
// a multiple of 0.5 up to 64, has int8 weights; x's parts go into two columns of one product).
// 0 = automatic, 1 = never (the fp16 products). Process-wide, for tests and benchmarks.
void set_gemv_int8(int mode);
// Whether gemv_fp16_cuda keeps the tables it builds from a tensor's grid (the decoder's byte tables,
// the table decoder's fp16 values, int3 asym's per-zero-point tables) for the next launches of
// the same format, per thread (default on). Off rebuilds them at every launch: host time only
// (about 9 us for int3 asym, up to 1.5 us for the others), y the same. For benchmarks.
void set_gemv_table_cache(bool on);
// Whether gemv_fp16_cuda(w, x, M, ...) runs the int8 products now.
bool gemv_int8_products(const DeviceTensor& w, int64_t M);
// The bits of x's fixed point under the int8 products now (16, or 15 for razer4), else 0.
int gemv_int8_x_bits(const DeviceTensor& w, int64_t M);
// Whether gemv_fp16_cuda(w, x, M, ...) applies w's scales to the block sums (POST, or the int8
// products) now.
bool gemv_post_scaled(const DeviceTensor& w, int64_t M);
// What gemv_fp16_cuda uses for w now: "int4-bits/2", "e2m1-bits/1", "int3-bits/1",
// "fp3-bits/1", "nib3/1" (razer3, fp3, int3), "nib3/bulk", "nib3-i8/bulk" and "e2m1-xor-i8/1"
// (the int8 products), "table/1", ... (decoder / stages at M rows of x), or "unsupported".
const char* gemv_decoder_name(const DeviceTensor& w, int64_t M = 1);

}  // namespace razerq::kernels
