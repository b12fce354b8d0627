/*
 * prepare: turn text into a dataset directory (token shards + dataset.pbtxt).
 *
 *   dape prepare --input PATH... --tokenizer byte|sp:MODEL|train-sp:VOCAB --out DIR
 *                [--val-fraction F] [--sp-train-bytes N]
 *                [--format auto|text|jsonl] [--text-field NAME] [--on-bad-record error|skip]
 *
 * Inputs are files or directories of them (walked in sorted order, text_documents.h): plain
 * text, where every file is one document, or JSON lines (also .jsonl.zst), where every line is
 * one (document_source.h). Each document is tokenized and followed by the tokenizer's
 * end-of-document token, then goes to the training or validation split:
 *
 *   - with at least 20 documents, whole documents: ⌈F·D⌉ of the D documents, evenly spread over
 *     the input order (the k-th is document ⌊(2k+1)·D / (2·⌈F·D⌉)⌋), go to validation;
 *   - with fewer, every document gives its last ⌈F·n⌉ tokens (of n, counting its
 *     end-of-document token) to validation and the rest, closed by an end-of-document token, to
 *     training, so even a single book gets a held-out tail.
 *
 * (train_val_split.h states the rule exactly; D counts records, bad ones included, so a skipped
 * record never moves the others from one split to the other.) Under --on-bad-record skip, bad
 * records are left out and tallied by reason, with the first example of each, in the summary.
 * Each split is written as shards of at most
 * `shard_tokens` tokens, train_00000.tok, … and val_00000.tok, …; the manifest is written last
 * and atomically, so a directory with a dataset.pbtxt holds a complete dataset.
 *
 * Several ranks (`mpirun -np N dape prepare`, given a Communicator of N): rank r of N takes the
 * contiguous records [⌊D·r/N⌋, ⌊D·(r+1)/N⌋), skips to the first of them (JSON lines: line ends
 * are found without parsing), tokenizes them and writes its own shards, train_rRRR_00000.tok, …
 * and val_rRRR_00000.tok, …; rank 0 prepares the directory first, trains a train-sp tokenizer
 * (on the same sample one process would use) and shares it, and at the end gathers every rank's
 * shard entries, unigram counts and bad-record tallies and writes the manifest, listing the
 * shards in rank order. Since the split rule depends on record numbers only, each split's token
 * stream, read in manifest order, is the same whatever N is: only the shard files' boundaries
 * differ (`dape inspect` prints a digest of each split's stream to compare datasets by). The
 * output directory must be on a file system all ranks share. Every rank reads the inputs' record
 * count at open, so that pass does not get faster with N; tokenizing and writing do. One big
 * document is never split: parallelism comes from many documents (a Books3 line is a book). The
 * output directory must be new, empty, or an earlier dataset (whose manifest and shards are
 * replaced); anything else is refused rather than mixed with our files. The same inputs and options
 * give byte-identical outputs.
 *
 * Tokenizers and input formats are small interfaces (tokenizer.h, document_source.h). A
 * SentencePiece tokenizer's model is saved in the directory as tokenizer.model and named by the
 * manifest, so a dataset decodes on its own; `--tokenizer train-sp:VOCAB` first trains the model
 * on the first `sp_train_bytes` of the documents (a pass of its own, before the output directory
 * is touched), then reads the documents again to tokenize them.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/data/document_source.h"
#include "core/data/tokenizer.h"
#include "parallel/comm.h"

namespace dape::data {

struct PrepareOptions {
  std::vector<std::string> inputs;
  // "byte", "sp:MODEL" or "train-sp:VOCAB" (tokenizer.h).
  std::string tokenizer = "byte";
  // train-sp: the tokenizer is trained on the first sp_train_bytes bytes of text.
  int64_t sp_train_bytes = kDefaultTokenizerTrainingBytes;
  // "auto" | "text" | "jsonl" (see open_documents).
  std::string format = "auto";
  // The JSON text field and what to do with bad records (document_source.h). Its
  // show_progress is set from show_progress below.
  ReaderOptions reader;
  std::string out_dir;
  // In [0, 1). 0.01 holds out 1%: ≈43k byte tokens of the 4.3 MB demo Bible, five 8192-token
  // evaluation chunks.
  double val_fraction = 0.01;
  int64_t shard_tokens = int64_t{1} << 28;
  bool show_progress = true;
};

// Bad records of one kind that were skipped: how many, and where the first one was.
struct BadRecordTally {
  int64_t count = 0;
  std::string first;
};

struct PrepareSummary {
  std::string out_dir;
  // What tokenized the text (TextTokenizer::summary).
  std::string tokenizer;
  // What was read (DocumentSource::describe).
  std::string inputs;
  // Records, skipped ones included.
  int64_t documents = 0;
  int64_t skipped_records = 0;
  // Reason (Document::reason) -> tally.
  std::map<std::string, BadRecordTally> bad_records;
  int64_t input_bytes = 0;
  int64_t train_documents = 0, validation_documents = 0;
  int64_t train_tokens = 0, validation_tokens = 0;
  int64_t train_shards = 0, validation_shards = 0;
  bool split_by_document = false;
  // Ranks that tokenized, and how long the slowest took over its records (reading, tokenizing,
  // writing: the part that runs in parallel), with the input bytes it read.
  int ranks = 1;
  double slowest_rank_seconds = 0;
  int64_t slowest_rank_bytes = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  // Unigram entropy of the training split, per token.
  double train_entropy_nats = 0, train_entropy_bits = 0;
};

// Throws dape::Error on a missing input, an unsupported tokenizer or format, a refused output
// directory, an out-of-range option, a bad record (unless options.reader skips them), or inputs
// that give no training tokens.
// With a communicator, every rank of it calls this with the same options, takes its share of
// the records (above), and gets the whole dataset's summary back.
PrepareSummary prepare_dataset(const PrepareOptions& options);
PrepareSummary prepare_dataset(const PrepareOptions& options, Communicator& comm);

// A few lines for the terminal.
std::string format_prepare_summary(const PrepareSummary& summary);

}  // namespace dape::data
