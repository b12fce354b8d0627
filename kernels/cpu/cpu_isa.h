/*
 * Which CPU instructions this build's kernels use, for `dape --version`, benchmark headers and
 * test logs: a figure or a failure means little without the ISA it came from.
 *
 * Two independent choices decide it. The hand-written kernels (kernels/cpu/) are compiled once
 * for one -march (CMake's DAPE_MARCH: native by default, or an x86-64 level), which fixes their
 * vector width and whether a·b + c is one fused multiply-add. oneDNN's GEMMs pick their ISA at
 * run time from the CPU, capped by the ONEDNN_MAX_CPU_ISA environment variable. Both are
 * reported, with the CPU's own name.
 */
#pragma once

#include <string>

namespace dape::cpu {

// One line, e.g. "kernels -march=native: 64-byte vectors (AVX-512), FMA; oneDNN: avx512_core;
// CPU: AMD EPYC".
std::string describe_cpu_isa();

}  // namespace dape::cpu
