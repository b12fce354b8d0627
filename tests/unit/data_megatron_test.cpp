// Megatron/GPT-NeoX .bin/.idx: the writer's bytes against the layout, exact reads for every
// dtype, every corruption of the index or the data named clearly, and the pair as a training
// dataset (splits, vocabulary, validation path) and under `inspect`.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/data/dataset.h"
#include "core/data/inspect_data.h"
#include "core/data/megatron_dataset.h"
#include "core/data/train_batch_source.h"
#include "tests/unit/data_test_util.h"

namespace dape::data {
namespace {

using test::expect_error;
using test::ScratchDir;

// Document d: 1 + d % 3 sequences of deterministic ids below `max_id`.
std::vector<std::vector<std::vector<int32_t>>> make_documents(int docs, int32_t max_id,
                                                              int32_t min_id = 0) {
  std::vector<std::vector<std::vector<int32_t>>> out;
  for (int d = 0; d < docs; ++d) {
    std::vector<std::vector<int32_t>> seqs;
    for (int s = 0; s <= d % 3; ++s) {
      std::vector<int32_t> seq;
      const int n = (d * 7 + s * 5) % 23;  // some empty sequences too
      for (int i = 0; i < n; ++i) {
        const int64_t span = int64_t{max_id} - min_id;
        seq.push_back(
            static_cast<int32_t>(min_id + (int64_t{d} * 1000003 + s * 7919 + i * 104729) % span));
      }
      seqs.push_back(seq);
    }
    out.push_back(seqs);
  }
  return out;
}

std::vector<int32_t> flatten(const std::vector<std::vector<std::vector<int32_t>>>& docs,
                             int first = 0, int last = -1) {
  std::vector<int32_t> out;
  if (last < 0) last = static_cast<int>(docs.size());
  for (int d = first; d < last; ++d)
    for (const auto& s : docs[static_cast<size_t>(d)]) out.insert(out.end(), s.begin(), s.end());
  return out;
}

void write_dataset(const std::string& prefix, MegatronDtype dtype,
                   const std::vector<std::vector<std::vector<int32_t>>>& docs) {
  MegatronDatasetWriter w(prefix, dtype);
  for (const auto& doc : docs) {
    for (const auto& seq : doc) w.add_sequence(seq);
    w.end_document();
  }
  w.finish();
}

std::vector<int32_t> read_all(const TokenStream& s) {
  std::vector<int32_t> v(static_cast<size_t>(s.size()));
  s.read(0, s.size(), v.data());
  return v;
}

template <class T>
T field(const std::string& bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));
  return v;
}

template <class T>
std::string bytes_of(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}

TEST(Megatron, WriterFollowsTheLayoutAndEveryDtypeReadsBackExactly) {
  ScratchDir dir;
  struct Case {
    MegatronDtype dtype;
    int code;
    size_t width;
    int32_t lo, hi;
  };
  for (const Case& c :
       {Case{MegatronDtype::kUint16, 8, 2, 0, 65535},
        Case{MegatronDtype::kInt32, 4, 4, 0, 2000000000},
        Case{MegatronDtype::kInt64, 5, 8, 0, 2147483647}, Case{MegatronDtype::kUint8, 1, 1, 0, 255},
        Case{MegatronDtype::kInt16, 3, 2, 0, 32767}, Case{MegatronDtype::kInt8, 2, 1, 0, 127}}) {
    SCOPED_TRACE(megatron_dtype_name(c.dtype));
    const std::string prefix = dir / megatron_dtype_name(c.dtype);
    const auto docs = make_documents(10, c.hi, c.lo);
    write_dataset(prefix, c.dtype, docs);
    const std::vector<int32_t> all = flatten(docs);

    // The index, field by field, against the documented layout.
    const std::string idx = read_file(prefix + ".idx");
    int64_t n = 0;
    for (const auto& d : docs) n += static_cast<int64_t>(d.size());
    ASSERT_EQ(idx.size(), 34 + 12 * static_cast<size_t>(n) + 8 * 11);
    EXPECT_EQ(idx.substr(0, 9), std::string("MMIDIDX\0\0", 9));
    EXPECT_EQ(field<uint64_t>(idx, 9), 1u);
    EXPECT_EQ(static_cast<int>(static_cast<uint8_t>(idx[17])), c.code);
    EXPECT_EQ(field<uint64_t>(idx, 18), static_cast<uint64_t>(n));
    EXPECT_EQ(field<uint64_t>(idx, 26), 11u);
    int64_t s = 0, pointer = 0, doc_entry = 0;
    EXPECT_EQ(field<int64_t>(idx, 34 + 12 * n), 0);
    for (const auto& d : docs) {
      for (const auto& seq : d) {
        EXPECT_EQ(field<int32_t>(idx, 34 + 4 * s), static_cast<int32_t>(seq.size()));
        EXPECT_EQ(field<int64_t>(idx, 34 + 4 * n + 8 * s), pointer);
        pointer += static_cast<int64_t>(seq.size() * c.width);
        ++s;
      }
      ++doc_entry;
      EXPECT_EQ(field<int64_t>(idx, 34 + 12 * n + 8 * doc_entry), s);
    }
    // The data: the ids back to back, little-endian, of the dtype's width.
    const std::string bin = read_file(prefix + ".bin");
    ASSERT_EQ(bin.size(), all.size() * c.width);
    for (size_t i = 0; i < all.size(); ++i) {
      int64_t v = 0;
      std::memcpy(&v, bin.data() + i * c.width, c.width);
      ASSERT_EQ(v, all[i]) << "token " << i;
    }

    // Read back through each spelling of the path.
    for (const std::string& p : {prefix, prefix + ".idx", prefix + ".bin"}) {
      MegatronDataset data(p);
      EXPECT_EQ(data.tokens(), static_cast<int64_t>(all.size()));
      EXPECT_EQ(data.documents(), 10);
      EXPECT_EQ(data.index().sequences(), n);
      std::vector<int32_t> got(all.size());
      data.read(0, data.tokens(), got.data(), int64_t{c.hi} + 1);
      EXPECT_EQ(got, all);
      for (int d = 0; d <= 10; ++d) {
        EXPECT_EQ(data.document_start(d), static_cast<int64_t>(flatten(docs, 0, d).size()));
      }
      // A window in the middle.
      std::vector<int32_t> window(17);
      data.read(31, 17, window.data(), int64_t{c.hi} + 1);
      EXPECT_EQ(window, std::vector<int32_t>(all.begin() + 31, all.begin() + 48));
    }
  }
}

TEST(Megatron, IdsAreCheckedAgainstTheVocabularyAndTheDtype) {
  ScratchDir dir;
  const std::string prefix = dir / "d";
  MegatronDatasetWriter w(prefix, MegatronDtype::kInt16);
  w.add_document(std::vector<int32_t>{1, 2, 3});
  w.add_sequence(std::vector<int32_t>{4, 700, 5});
  w.add_sequence(std::vector<int32_t>{-3});
  w.end_document();
  w.finish();
  MegatronDataset data(prefix);
  std::vector<int32_t> out(7);
  data.read(0, 3, out.data(), 10);
  expect_error([&] { data.read(0, 7, out.data(), 10); },
               {prefix + ".bin", "token id 700", "token offset 4", "sequence 1", "[0, 10)"});
  expect_error([&] { data.read(3, 4, out.data(), 1000); },
               {"token id -3", "token offset 6", "sequence 2"});
  expect_error([&] { data.read(5, 3, out.data(), 1000); }, {"outside its 7 tokens"});
  EXPECT_EQ(data.id_range(0, 7), (std::pair<int64_t, int64_t>(-3, 700)));

  MegatronDatasetWriter u8(dir / "u8", MegatronDtype::kUint8);
  expect_error(
      [&] {
        u8.add_sequence(std::vector<int32_t>{3, 256});
      },
      {"token id 256", "does not fit uint8"});
  MegatronDatasetWriter i8(dir / "i8", MegatronDtype::kInt8);
  expect_error([&] { i8.add_sequence(std::vector<int32_t>{-129}); }, {"-129", "int8"});
  // Sequences after the last document are refused, and nothing is left behind.
  {
    MegatronDatasetWriter open(dir / "open", MegatronDtype::kUint16);
    open.add_sequence(std::vector<int32_t>{1});
    expect_error([&] { open.finish(); }, {"after the last end_document"});
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "open.bin.tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir / "open.idx"));
}

// A valid pair to corrupt: 4 documents of uint16 tokens, 7 sequences.
struct Pair {
  ScratchDir dir;
  std::string prefix = dir / "p";
  std::string idx = prefix + ".idx", bin = prefix + ".bin";
  std::string good_idx, good_bin;
  int64_t n = 0;
  Pair() {
    const auto docs = make_documents(4, 1000);
    for (const auto& d : docs) n += static_cast<int64_t>(d.size());
    write_dataset(prefix, MegatronDtype::kUint16, docs);
    good_idx = read_file(idx);
    good_bin = read_file(bin);
  }
  size_t size_at(int64_t i) const { return 34 + 4 * static_cast<size_t>(i); }
  size_t pointer_at(int64_t i) const { return 34 + 4 * static_cast<size_t>(n) + 8 * i; }
  size_t doc_at(int64_t j) const { return 34 + 12 * static_cast<size_t>(n) + 8 * j; }
  void reset() {
    test::write_bytes(idx, good_idx);
    test::write_bytes(bin, good_bin);
  }
  void patch(size_t offset, const std::string& bytes) {
    reset();
    test::patch_bytes(idx, offset, bytes);
  }
  std::string error() const {
    return test::error_of([&] { MegatronDataset d(prefix); });
  }
};

TEST(Megatron, EveryCorruptionOfTheIndexIsNamed) {
  Pair p;
  ASSERT_EQ(p.n, 7);  // documents of 1, 2, 3, 1 sequences
  ASSERT_EQ(p.error(), "");
  auto expect = [&](const std::vector<std::string>& parts) {
    const std::string msg = p.error();
    EXPECT_FALSE(msg.empty()) << "no error for " << parts.front();
    for (const auto& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "message lacks '" << part << "': " << msg;
  };
  p.patch(0, "MMIDIDY");
  expect({p.idx, "bad magic", "MMIDIDY", "byte 0"});
  p.patch(0, "TNTIDX\0\0\0");
  expect({p.idx, "bad magic", "TNTIDX"});
  p.patch(9, bytes_of<uint64_t>(2));
  expect({p.idx, "version 2", "byte 9"});
  p.patch(17, std::string(1, '\x06'));
  expect({p.idx, "dtype code 6", "floating-point", "float64", "np.float"});
  p.patch(17, std::string(1, '\x07'));
  expect({p.idx, "dtype code 7", "floating-point", "float32", "np.double"});
  p.patch(17, std::string(1, '\x09'));
  expect({p.idx, "unknown dtype code 9", "8 uint16"});

  // Truncation: inside the header, inside the arrays.
  p.reset();
  test::truncate_by(p.idx, p.good_idx.size() - 20);
  expect({p.idx, "20 bytes", "34-byte header"});
  p.reset();
  test::truncate_by(p.idx, 8);
  expect({p.idx, "truncated", "7 sequences", "5 doc_idx entries",
          fmt::format("need {} bytes", p.good_idx.size())});
  p.patch(18, bytes_of<uint64_t>(uint64_t{1} << 62));  // a count no file could hold
  expect({p.idx, "truncated", "4611686018427387904 sequences"});
  p.reset();
  test::write_bytes(p.idx, p.good_idx + std::string(7, '\0'));
  expect({p.idx, "7 more", "one byte per sequence", "multimodal"});

  // Entries.
  p.patch(p.size_at(2), bytes_of<int32_t>(-4));
  expect({p.idx, "sizes[2] = -4", "negative"});
  p.patch(p.pointer_at(3), bytes_of<int64_t>(int64_t{1} << 40));
  expect({p.idx, "pointers[3] = 1099511627776", "inconsistent", "pointers[2] + sizes[2]"});
  p.patch(p.pointer_at(0), bytes_of<int64_t>(2));
  expect({p.idx, "pointers[0] = 2", "byte 0"});
  p.patch(p.doc_at(2), bytes_of<int64_t>(0));
  expect({p.idx, "out of order", "doc_idx[2] = 0", "doc_idx[1] = 1"});
  p.patch(p.doc_at(3), bytes_of<int64_t>(9));
  expect({p.idx, "doc_idx[3] = 9", "beyond the 7 sequences"});
  p.patch(p.doc_at(4), bytes_of<int64_t>(6));
  expect({p.idx, "ends at 6", "sequences 6 to 6 belong to no document"});
  p.patch(p.doc_at(0), bytes_of<int64_t>(1));
  expect({p.idx, "doc_idx[0] = 1", "expected 0"});

  // Sizes against the .bin: the last sequence's size changes no pointer, only the length.
  p.patch(p.size_at(6), bytes_of<int32_t>(field<int32_t>(p.good_idx, p.size_at(6)) + 3));
  expect({p.bin, fmt::format("{} bytes", p.good_bin.size()), "describes",
          fmt::format("{} bytes", p.good_bin.size() + 6)});
  p.reset();
  test::truncate_by(p.bin, 2);
  expect({p.bin, "truncated?"});
  p.reset();
  std::filesystem::remove(p.bin);
  expect({p.bin, "does not exist"});
  p.reset();
  EXPECT_EQ(p.error(), "");
}

TEST(Megatron, TrainingDatasetSplitsWholeDocumentsEvenly) {
  ScratchDir dir;
  const auto docs = make_documents(25, 300);
  write_dataset(dir / "m", MegatronDtype::kUint16, docs);
  // ⌈0.1·25⌉ = 3 validation documents: ⌊25/6⌋ = 4, ⌊75/6⌋ = 12, ⌊125/6⌋ = 20.
  std::vector<int32_t> train, val;
  for (int d = 0; d < 25; ++d) {
    const auto t = flatten(docs, d, d + 1);
    auto& to = (d == 4 || d == 12 || d == 20) ? val : train;
    to.insert(to.end(), t.begin(), t.end());
  }
  DatasetOpenOptions o{.verify_checksums = true,
                       .show_progress = false,
                       .vocab_size = 300,
                       .validation_path = "",
                       .val_fraction = 0.1};
  for (const std::string& path : {dir / "m", dir / "m.idx", dir / "m.bin"}) {
    TokenDataset ds(path, o);
    EXPECT_TRUE(ds.is_megatron());
    EXPECT_EQ(ds.vocab_size(), 300);
    EXPECT_EQ(read_all(ds.train()), train);
    EXPECT_EQ(read_all(ds.validation()), val);
    EXPECT_EQ(ds.manifest().train().documents(), 22);
    EXPECT_EQ(ds.manifest().validation().documents(), 3);
    EXPECT_EQ(ds.manifest().validation().tokens(), static_cast<int64_t>(val.size()));
    EXPECT_EQ(ds.train().num_shards(), 0u);
  }
  // Windows across the joins of non-adjacent documents read what the concatenation holds.
  TokenDataset ds(dir / "m", o);
  for (int64_t at = 0; at + 40 <= ds.train().size(); at += 13) {
    std::vector<int32_t> w(40);
    ds.train().read(at, 40, w.data());
    ASSERT_EQ(w, std::vector<int32_t>(train.begin() + at, train.begin() + at + 40)) << at;
  }
  // The trainer's batches come straight from it.
  TrainBatchSource batches(ds.train(), 16, 1);
  EXPECT_EQ(batches.num_samples(), (static_cast<int64_t>(train.size()) - 1) / 16);

  // No validation: everything trains.
  o.val_fraction = 0;
  TokenDataset all(dir / "m", o);
  EXPECT_EQ(read_all(all.train()), flatten(docs));
  EXPECT_EQ(all.validation().size(), 0);

  // A separate validation dataset.
  const auto other = make_documents(3, 300);
  write_dataset(dir / "v", MegatronDtype::kInt32, other);
  o.validation_path = dir / "v.idx";
  o.val_fraction = 0.5;  // ignored with a validation path
  TokenDataset with_val(dir / "m", o);
  EXPECT_EQ(read_all(with_val.train()), flatten(docs));
  EXPECT_EQ(read_all(with_val.validation()), flatten(other));
  EXPECT_EQ(with_val.manifest().sources_size(), 2);
}

TEST(Megatron, TrainingDatasetErrorsAreClear) {
  ScratchDir dir;
  write_dataset(dir / "m", MegatronDtype::kUint16, make_documents(25, 300));
  expect_error([&] { TokenDataset ds(dir / "m.idx"); },
               {dir / "m", "do not record the vocabulary", "model.vocab_size"});
  // Ids at or above the vocabulary: found by the verifying scan, and by every read.
  DatasetOpenOptions o{.verify_checksums = true,
                       .show_progress = false,
                       .vocab_size = 200,
                       .validation_path = "",
                       .val_fraction = 0.01};
  expect_error([&] { TokenDataset ds(dir / "m", o); },
               {dir / "m.bin", "outside the vocabulary [0, 200)"});
  o.verify_checksums = false;
  TokenDataset unverified(dir / "m", o);
  expect_error([&] { read_all(unverified.train()); }, {dir / "m.bin", "[0, 200)"});

  write_dataset(dir / "one", MegatronDtype::kUint16, make_documents(1, 300));
  o.vocab_size = 300;
  expect_error([&] { TokenDataset ds(dir / "one", o); },
               {"1 document", "leaves none to train on", "data.val_fraction", "validation_path"});
  o.validation_path = dir / "nowhere";
  expect_error([&] { TokenDataset ds(dir / "m", o); }, {dir / "nowhere", "not a Megatron dataset"});
  o.validation_path = dir / "missing.idx";
  expect_error([&] { TokenDataset ds(dir / "m", o); }, {dir / "missing.idx", "does not exist"});
  // A validation path beside a dataset directory has nothing to apply to.
  std::filesystem::create_directories(dir / "dsdir");
  o.validation_path = dir / "m";
  expect_error([&] { TokenDataset ds(dir / "dsdir", o); }, {"Megatron data only"});
}

TEST(Megatron, InspectReportsTheHeaderAndVerifiesEverything) {
  ScratchDir dir;
  write_dataset(dir / "m", MegatronDtype::kUint16, make_documents(6, 300));
  MegatronDataset data(dir / "m");
  const std::string report = inspect_megatron(dir / "m", true, 0);
  for (const std::string& part :
       {std::string("Megatron dataset"), std::string("uint16 (code 8"),
        fmt::format("sequences      : {}", data.index().sequences()),
        std::string("documents      : 6 (7 doc_idx entries)"),
        fmt::format("tokens         : {}", data.tokens()), std::string("sequence sizes : min 0"),
        std::string("all 12 consistent"), std::string("pass --vocab N")}) {
    EXPECT_NE(report.find(part), std::string::npos) << "lacks '" << part << "':\n" << report;
  }
  EXPECT_NE(
      inspect_megatron(dir / "m.idx", true, 300).find("all inside the vocabulary [0, 300) OK"),
      std::string::npos);
  // Out of vocabulary: the report still comes, with the first offending id.
  try {
    inspect_megatron(dir / "m.bin", true, 100);
    ADD_FAILURE() << "expected InspectFailure";
  } catch (const InspectFailure& e) {
    EXPECT_NE(e.report().find("OUTSIDE the vocabulary [0, 100)"), std::string::npos) << e.report();
    EXPECT_NE(std::string(e.what()).find("token offset"), std::string::npos) << e.what();
  }
  // A broken pointer: a finding of the report, not a bare error.
  const std::string idx = read_file(dir / "m.idx");
  test::patch_bytes(dir / "m.idx", 34 + 4 * 12 + 8 * 5, bytes_of<int64_t>(3));
  try {
    inspect_megatron(dir / "m", true, 0);
    ADD_FAILURE() << "expected InspectFailure";
  } catch (const InspectFailure& e) {
    EXPECT_NE(e.report().find("pointers       : ERROR"), std::string::npos) << e.report();
    EXPECT_NE(e.report().find("doc_idx        : starts at 0"), std::string::npos) << e.report();
    EXPECT_NE(std::string(e.what()).find("pointers[5] = 3"), std::string::npos) << e.what();
  }
  // Without verification only the header and sizes are read.
  EXPECT_NE(inspect_megatron(dir / "m", false, 0).find("not verified"), std::string::npos);
  test::write_bytes(dir / "m.idx", idx.substr(0, 10));
  expect_error([&] { inspect_megatron(dir / "m", true, 0); }, {"shorter than the 34-byte header"});
}

}  // namespace
}  // namespace dape::data
