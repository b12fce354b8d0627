/*
 * Shared by the tests run under mpirun: the job's world group, which mpi_main.cpp makes before
 * the tests run (every rank runs every test).
 */
#pragma once

#include "parallel/comm.h"

namespace dape::test {

extern Communicator* g_world;

inline Communicator& world() {
  return *g_world;
}

}  // namespace dape::test
