/*
 * Shared by the tests run under mpirun: the job's world group, which mpi_main.cpp makes before
 * the tests run (every rank runs every test), and a small dataset every rank can read.
 */
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include "common/file_util.h"
#include "common/rng.h"
#include "core/data/prepare.h"
#include "parallel/comm.h"
#include "tests/unit/test_util.h"

namespace dape::test {

extern Communicator* g_world;

inline Communicator& world() {
  return *g_world;
}

// A pseudo-word corpus of 20000 words (sentences of `sentence_words`) prepared by every rank of
// the world together into dir()/data, in a scratch directory rank 0 makes and shares. Collective
// to construct; rank 0 removes the directory when it is destroyed (after the ranks' last use:
// end each test with a barrier).
class SharedWordCorpus {
 public:
  SharedWordCorpus(uint64_t seed, int sentence_words) {
    if (world().rank() == 0) {
      scratch_ = std::make_unique<ScratchDir>();
      Rng rng(seed, 0);
      const char* words[] = {"in",  "the",   "beginning", "was",  "word",
                             "and", "light", "darkness",  "said", "let"};
      std::ofstream f(*scratch_ / "corpus.txt");
      for (int i = 0; i < 20000; ++i)
        f << words[rng.below(10)] << (i % sentence_words == sentence_words - 1 ? ".\n" : " ");
    }
    dir_ = world().broadcast_bytes(scratch_ ? scratch_->path() : std::string(), 0);
    data::PrepareOptions p;
    p.inputs = {join_path(dir_, "corpus.txt")};
    p.out_dir = join_path(dir_, "data");
    p.val_fraction = 0.05;
    p.show_progress = false;
    data::prepare_dataset(p, world());
  }
  const std::string& dir() const { return dir_; }

 private:
  std::unique_ptr<ScratchDir> scratch_;
  std::string dir_;
};

}  // namespace dape::test
