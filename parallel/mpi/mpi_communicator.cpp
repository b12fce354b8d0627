#include "parallel/mpi/mpi_communicator.h"

#include <cstdlib>
#include <limits>

#include "common/check.h"

namespace dape {

namespace {

// MPI datatype of a tensor's elements (host float types only).
MPI_Datatype mpi_type(const Tensor& t) {
  switch (t.dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    default:
      DAPE_CHECK(false, "MPI collectives take float32, float64 or int32 host tensors, not {}",
                 dtype_name(t.dtype));
  }
  return MPI_DATATYPE_NULL;
}

int count_of(int64_t n) {
  DAPE_CHECK(n <= std::numeric_limits<int>::max(),
             "a collective of {} elements exceeds MPI's int count", n);
  return static_cast<int>(n);
}

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw InternalError(
      fmt::format("{} failed: {}", what, std::string(text, static_cast<size_t>(len))));
}

// Reductions take floating-point tensors only (the integer type is for gathers and broadcasts).
MPI_Datatype mpi_float_type(const Tensor& t, const char* what) {
  DAPE_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, "{} takes float32 or float64, not {}",
             what, dtype_name(t.dtype));
  return mpi_type(t);
}

// An MPI_Iallreduce in flight.
class MpiPendingCollective final : public PendingCollective {
 public:
  explicit MpiPendingCollective(MPI_Request request) : request_(request) {}
  ~MpiPendingCollective() override {
    if (request_ == MPI_REQUEST_NULL) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Wait(&request_, MPI_STATUS_IGNORE);  // no throwing from a destructor
  }
  MpiPendingCollective(const MpiPendingCollective&) = delete;
  MpiPendingCollective& operator=(const MpiPendingCollective&) = delete;

  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "MPI_Test (all-reduce)");
    return done != 0;
  }
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait (all-reduce)");
  }

 private:
  MPI_Request request_;  // MPI_REQUEST_NULL once complete
};

// Environment variables an MPI launcher sets in every process it starts.
bool launcher_environment() {
  for (const char* v :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace

bool launched_by_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return true;
  if (!launcher_environment()) return false;
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as return codes, so they become exceptions with a message, not aborts.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return true;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (comm_ == MPI_COMM_WORLD) {
    MPI_Finalize();
  } else {
    MPI_Comm_free(&comm_);
  }
}

void MpiCommunicator::all_reduce_sum(const Tensor& x) {
  check(MPI_Allreduce(MPI_IN_PLACE, x.data, count_of(x.numel()), mpi_type(x), MPI_SUM, comm_),
        "MPI_Allreduce");
}

std::unique_ptr<PendingCollective> MpiCommunicator::start_all_reduce_sum(const Tensor& x) {
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Iallreduce(MPI_IN_PLACE, x.data, count_of(x.numel()),
                       mpi_float_type(x, "start_all_reduce_sum"), MPI_SUM, comm_, &request),
        "MPI_Iallreduce");
  return std::make_unique<MpiPendingCollective>(request);
}

void MpiCommunicator::all_reduce_max(const Tensor& x) {
  check(MPI_Allreduce(MPI_IN_PLACE, x.data, count_of(x.numel()),
                      mpi_float_type(x, "all_reduce_max"), MPI_MAX, comm_),
        "MPI_Allreduce (max)");
}

void MpiCommunicator::all_gather(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.dtype == in.dtype && out.numel() == in.numel() * size_,
             "all_gather: {} elements from each of {} ranks into {}", in.numel(), size_,
             out.numel());
  check(MPI_Allgather(in.data, count_of(in.numel()), mpi_type(in), out.data, count_of(in.numel()),
                      mpi_type(out), comm_),
        "MPI_Allgather");
}

void MpiCommunicator::reduce_scatter_sum(const Tensor& out, const Tensor& in) {
  DAPE_CHECK(out.dtype == in.dtype && in.numel() == out.numel() * size_,
             "reduce_scatter: {} elements over {} ranks into {}", in.numel(), size_, out.numel());
  check(MPI_Reduce_scatter_block(in.data, out.data, count_of(out.numel()), mpi_type(out), MPI_SUM,
                                 comm_),
        "MPI_Reduce_scatter_block");
}

void MpiCommunicator::broadcast(const Tensor& x, int root) {
  check(MPI_Bcast(x.data, count_of(x.numel()), mpi_type(x), root, comm_), "MPI_Bcast");
}

void MpiCommunicator::barrier() {
  check(MPI_Barrier(comm_), "MPI_Barrier");
}

double MpiCommunicator::all_reduce_sum(double v) {
  double out = 0;
  check(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  return out;
}

double MpiCommunicator::all_reduce_max(double v) {
  double out = 0;
  check(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce (max)");
  return out;
}

void MpiCommunicator::all_reduce_sum(int64_t* values, int64_t n) {
  check(MPI_Allreduce(MPI_IN_PLACE, values, count_of(n), MPI_INT64_T, MPI_SUM, comm_),
        "MPI_Allreduce");
}

std::vector<std::string> MpiCommunicator::all_gather_bytes(const std::string& mine) {
  const int64_t n = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(static_cast<size_t>(size_));
  check(MPI_Allgather(&n, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, comm_), "MPI_Allgather");
  std::vector<int> counts(static_cast<size_t>(size_)), offsets(static_cast<size_t>(size_));
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = count_of(total);
    counts[r] = count_of(sizes[r]);
    total += sizes[r];
  }
  std::string all(static_cast<size_t>(count_of(total)), '\0');
  check(MPI_Allgatherv(mine.data(), count_of(n), MPI_CHAR, all.data(), counts.data(),
                       offsets.data(), MPI_CHAR, comm_),
        "MPI_Allgatherv");
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r)
    out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(counts[r])));
  return out;
}

std::string MpiCommunicator::broadcast_bytes(const std::string& bytes, int root) {
  int64_t n = static_cast<int64_t>(bytes.size());
  check(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_), "MPI_Bcast");
  std::string out = rank_ == root ? bytes : std::string(static_cast<size_t>(count_of(n)), '\0');
  check(MPI_Bcast(out.data(), count_of(n), MPI_CHAR, root, comm_), "MPI_Bcast");
  return out;
}

void MpiCommunicator::abort(int code) {
  MPI_Abort(comm_, code);
  std::exit(code);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  DAPE_CHECK(color >= 0, "split: color {} is negative", color);
  MPI_Comm sub = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(sub);
}

std::unique_ptr<Communicator> make_world_communicator() {
  if (launched_by_mpi()) return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  return std::make_unique<LocalCommunicator>();
}

}  // namespace dape
