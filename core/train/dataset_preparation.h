/*
 * A run's dataset, prepared by the run itself when the config says how (data.prepare).
 *
 * `dape train` calls this before opening data.path. With data.prepare naming inputs:
 *   - data.path holds no dataset: it is prepared, exactly as `dape prepare` would with the same
 *     settings (core/data/prepare.h), and what is done is logged;
 *   - data.path holds a dataset: it is used as it is, if it was prepared with the tokenizer the
 *     config asks for (the same spec; for sp:MODEL the same model file, by checksum; for
 *     train-sp also the same training sample cap). Otherwise the run stops with an error that
 *     names both tokenizers: a run never trains on data tokenized differently from its config.
 * Without data.prepare nothing happens here, and a missing dataset is reported when it is opened.
 * Every rank of `comm` calls this; they prepare the dataset together (each a share of the
 * documents, prepare.h) and only the first rank logs.
 */
#pragma once

#include "core/config/config.h"
#include "parallel/comm.h"

namespace dape {

void prepare_dataset_if_missing(const LoadedConfig& config, bool show_progress, Communicator& comm);
// This process alone.
void prepare_dataset_if_missing(const LoadedConfig& config, bool show_progress);

}  // namespace dape
