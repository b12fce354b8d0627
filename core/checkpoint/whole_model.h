/*
 * WholeModel: the tensor-parallel pieces of a model put together as whole tensors, and taken
 * apart again, so that checkpoints (which hold whole tensors, DESIGN.md §5) can be written and
 * read by a model cut over several ranks.
 *
 * gather() all-gathers every piece of every parameter (and the AdamW moments) over the tensor-
 * parallel group, through host memory, and assembles a whole ParamStore and whole moments on
 * every rank of it; scatter() takes this rank's pieces of a whole store (after a load) back into
 * the local one. Simple and exact, but every rank briefly holds the whole model, so it suits
 * models that fit one host's memory; pieces written straight to shards of their own are the
 * sharded checkpoint's job.
 */
#pragma once

#include <memory>

#include "core/model/model_spec.h"
#include "core/model/param_store.h"
#include "core/optim/adamw_optimizer.h"
#include "parallel/comm.h"

namespace dape {

class WholeModel {
 public:
  // A whole store (and moments) shaped for `spec` as if it were not cut (its padded vocabulary
  // kept), allocated on `ops`.
  WholeModel(const ModelSpec& spec, Ops& ops);

  ParamStore& params() { return params_; }
  AdamW& optimizer() { return *optimizer_; }

  // Collective over `tp`: assemble every rank's pieces of `local` (and, if given, its full
  // moments m()/v(), already gathered over data-parallel ranks when sharded).
  void gather(const ParamStore& local, const AdamW* local_optimizer, Communicator& tp);
  // This rank's pieces of the whole values (and moments) into `local` (and local_optimizer's
  // full moments m()/v()).
  void scatter(ParamStore& local, AdamW* local_optimizer);

 private:
  Ops& ops_;
  ParamStore params_;
  std::unique_ptr<AdamW> optimizer_;
};

}  // namespace dape
