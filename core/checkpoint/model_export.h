/*
 * Model export: a checkpoint's parameters as one safetensors file with GPT-NeoX-like tensor
 * names, and a training run initialized from such a file.
 *
 * Names (layer L; docs/guide.md lists them with shapes):
 *   embed.weight                 gpt_neox.embed_in.weight
 *   pos_embed.weight             gpt_neox.embed_pos.weight          (learned positions only)
 *   layers.L.ln1.*               gpt_neox.layers.L.input_layernorm.*
 *   layers.L.attn.qkv.*          gpt_neox.layers.L.attention.query_key_value.*
 *   layers.L.attn.out.*          gpt_neox.layers.L.attention.dense.*
 *   layers.L.attn.kerple.* / fire.* / dape.*   gpt_neox.layers.L.attention.kerple.* / ...
 *   layers.L.ln2.*               gpt_neox.layers.L.post_attention_layernorm.*
 *   layers.L.mlp.fc1.*           gpt_neox.layers.L.mlp.dense_h_to_4h.*
 *   layers.L.mlp.fc2.*           gpt_neox.layers.L.mlp.dense_4h_to_h.*
 *   final_ln.*                   gpt_neox.final_layer_norm.*
 *   lm_head.weight / .bias       embed_out.weight / .bias
 * Unlike GPT-NeoX, query_key_value's rows are all heads' queries, then keys, then values (not
 * interleaved per head), and the position scheme's and DAPE's own parameters have no NeoX
 * counterpart. The vocabulary tensors hold the tokenizer's vocabulary rows only (the padding is a
 * matter of layout); float32; the metadata holds the config ("dape.config"), the step and the
 * vocabulary size.
 *
 * The export reads the checkpoint at TP 1 (any saved layout), holding the whole model in memory
 * once. Initializing from a file reads, on each rank, only its TensorSplit piece of each tensor;
 * padded vocabulary rows keep their initial values.
 */
#pragma once

#include <string>

#include "core/model/param_store.h"
#include "kernels/ops.h"

namespace dape {

// The exported name of a parameter (the list above); throws for a name with no mapping.
std::string export_name(const std::string& name);

// Writes the parameters of checkpoint `checkpoint_path` (step or run directory) to `out_path`.
// Returns a one-line summary.
std::string export_checkpoint(const std::string& checkpoint_path, const std::string& out_path,
                              Ops& ops);

// Sets this rank's parameters from an exported file: every tensor of `params` must be in it with
// the model's global shape (vocabulary tensors: `vocab` rows, of the `padded_vocab` the model
// has). Errors name the file and the tensor.
void init_from_export(const std::string& path, Ops& ops, ParamStore& params, int64_t vocab,
                      int64_t padded_vocab);

}  // namespace dape
