"""The row order llama.cpp's converter gives Q and K, and its inverse.

Why rows move at all: transformers' rotary code (`rotate_half`) pairs coordinate i of a
head with coordinate i + d_head/2. llama.cpp's "normal" RoPE, which its `llama`
architecture uses, pairs coordinates 2i and 2i + 1. So the converter reorders the output
rows of q_proj and k_proj (weights and biases) within every head, taking row i of the first
half and row i of the second half to the adjacent rows 2i and 2i + 1; the attention scores
are the same, the stored rows are not. Read back unchanged, every per-head and per-rotary-
pair measure (Q/K gauges, per-head spectra) would look at mixed-up rows.

What the converter does, from ggml-org/llama.cpp (`conversion/llama.py` at commit
0274f0fc7d7f, formerly the same code in `convert_hf_to_gguf.py`):

    class LlamaModel(TextModel):
        undo_permute = True
        @staticmethod
        def permute(weights, n_head, n_head_kv):
            if n_head_kv is not None and n_head != n_head_kv:
                n_head = n_head_kv
            return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
                    .swapaxes(1, 2).reshape(weights.shape))

    and in LlamaModel.modify_tensors, for names ending in q_proj.weight/q_proj.bias:
    permute(data, n_head, n_head); k_proj.weight/k_proj.bias: permute(data, n_head, n_kv_head).

So K (under GQA) is permuted in groups of num_key_value_heads. Qwen2 and Qwen3 are not:
`conversion/qwen.py` defines `Qwen2Model(TextModel)`, whose `modify_tensors` only renames
(`name = f"model.{name}"` for a bare Qwen2Model) before `TextModel.modify_tensors`, which
maps the name and yields the tensor as it is (`conversion/base.py`: `new_name =
self.map_tensor_name(name)` ... `return [(new_name, data_torch)]`); `Qwen3Model(Qwen2Model)`
adds only reranker and vocabulary handling. llama.cpp runs them with its NEOX rotary type
(`llama_model_rope_type` in `src/llama-model.cpp` lists LLM_ARCH_QWEN2 under "the pairs of
head values are offset by n_rot/2"), which pairs i with i + d_head/2 as transformers does.
transformers' own GGUF loader agrees: it reverse-permutes for `llama` only
(`LlamaTensorProcessor` in `modeling_gguf_pytorch_utils.py`), and the tests compare logits
of both architectures with it.
"""

from __future__ import annotations

import torch


def _check(rows: int, n_head: int) -> None:
    if n_head <= 0 or rows % (2 * n_head) != 0:
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of rotary pairs")


def permute_rows(weights: torch.Tensor, n_head: int) -> torch.Tensor:
    """The converter's permutation (for writing GGUF files as llama.cpp does)."""
    rows = weights.shape[0]
    _check(rows, n_head)
    rest = weights.shape[1:]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *rest)
        .transpose(1, 2)
        .reshape(weights.shape)
    )


def unpermute_rows(weights: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows back in transformers' order: the inverse of `permute_rows` for the same n_head."""
    rows = weights.shape[0]
    _check(rows, n_head)
    rest = weights.shape[1:]
    return (
        weights.reshape(n_head, rows // n_head // 2, 2, *rest)
        .transpose(1, 2)
        .reshape(weights.shape)
    )
