#include "kernels/cpu/cpu_isa.h"

#include <oneapi/dnnl/dnnl.h>

#include <fstream>

#include "kernels/cpu/simd_rows.h"

#ifndef DAPE_MARCH_NAME
#define DAPE_MARCH_NAME ""
#endif

namespace dape::cpu {

namespace {

const char* onednn_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic:
      return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "all";
  }
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

}  // namespace

std::string describe_cpu_isa() {
  const std::string march = DAPE_MARCH_NAME;
  const char* vectors = simd::kBytes == 64 ? "AVX-512" : simd::kBytes == 32 ? "AVX" : "SSE";
#if defined(__FMA__)
  const char* fma = "FMA";
#else
  const char* fma = "no FMA";
#endif
  return "kernels " + (march.empty() ? std::string("default -march") : "-march=" + march) + ": " +
         std::to_string(simd::kBytes) + "-byte vectors (" + vectors + "), " + fma +
         "; oneDNN: " + onednn_isa_name(dnnl_get_effective_cpu_isa()) +
         "; CPU: " + cpu_model_name();
}

}  // namespace dape::cpu
