#pragma once
// Programmatic dependent launch (PDL, sm_90 and later): host-side switch. Includes no CUDA header.
//
// The fused GEMV and the decode-step kernels are launched so that each may start while the
// kernel before it on the stream is still running (cudaLaunchAttributeProgrammaticStreamSerialization)
// and say so early themselves (griddepcontrol.launch_dependents). A kernel launched this way reads
// nothing another kernel writes, and writes nothing, before griddepcontrol.wait, which returns
// once the kernel before it has finished and its writes are visible: the GEMV loads its first
// blocks of codes and group scales (weights, which no kernel writes) before waiting, so that
// latency overlaps the previous kernel's tail. Results are the same bit for bit either way.
//
// Used only on streams other than the legacy default stream (nullptr), on devices of compute
// capability 9 or more, and while the setting is on: on by default; RAZERQ_PDL=0 in the
// environment or set_pdl(false) turns it off (process-wide, for measurements).
namespace razerq::kernels {

void set_pdl(bool on);
bool pdl_setting();

}  // namespace razerq::kernels
