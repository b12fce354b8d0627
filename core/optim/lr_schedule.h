/*
 * Learning-rate schedule: linear warm-up from 0 to the peak, then cosine decay to min_lr at the
 * last step (DESIGN.md §1: 6e-4 → 6e-5 with 1% warm-up). A pure function of the step, so a
 * resumed run needs no schedule state beyond the step.
 */
#pragma once

#include <cstdint>

namespace dape {

struct LrSchedule {
  double peak = 6e-4;
  double min_lr = 6e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // Learning rate for optimizer step `step` (0-based).
  double at(int64_t step) const;
};

}  // namespace dape
