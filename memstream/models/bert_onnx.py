"""Build an ONNX graph of a BERT sentence encoder straight from its safetensors weights.

Why not `torch.onnx.export`: PyTorch from PyPI pulls several GB of CUDA wheels; this builder
needs only `onnx` and `safetensors` and writes the same computation (word + position +
type embeddings, N post-LayerNorm encoder layers with exact-erf GELU), plus the sentence
head of all-MiniLM-L6-v2: mean pooling over the attention mask and L2 normalisation. The
result is checked against sentence-transformers vectors in tests/fixtures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


class _Graph:
    """A small helper around onnx.helper: unique names, initializers, nodes."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: object) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def build_bert_onnx(weights_path: Path, config_path: Path) -> onnx.ModelProto:
    """ONNX model: inputs `input_ids`, `attention_mask` (int64 [B, T]); outputs
    `sentence_embedding` (float32 [B, H], unit length) and `token_embeddings` ([B, T, H])."""
    from safetensors.numpy import load_file

    config = json.loads(config_path.read_text())
    w = {k.removeprefix("bert."): v for k, v in load_file(str(weights_path)).items()}
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph()

    def dense(x: str, prefix: str) -> str:
        weight = g.const(w[f"{prefix}.weight"].T.astype(np.float32), "W")
        bias = g.const(w[f"{prefix}.bias"].astype(np.float32), "b")
        return g.op("Add", [g.op("MatMul", [x, weight]), bias])

    def layer_norm(x: str, prefix: str) -> str:
        scale = g.const(w[f"{prefix}.weight"].astype(np.float32), "ln_w")
        bias = g.const(w[f"{prefix}.bias"].astype(np.float32), "ln_b")
        return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    i64 = lambda *v: g.const(np.array(v, dtype=np.int64), "shape")  # noqa: E731

    # embeddings
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), i64(1)], axis=0)
    positions = g.op(
        "Slice",
        [g.const(w["embeddings.position_embeddings.weight"], "pos"), i64(0), seq_len, i64(0)],
    )
    words = g.op(
        "Gather", [g.const(w["embeddings.word_embeddings.weight"], "words"), "input_ids"], axis=0
    )
    token_type = g.const(w["embeddings.token_type_embeddings.weight"][0], "type0")
    x = g.op("Add", [g.op("Add", [words, positions]), token_type])
    x = layer_norm(x, "embeddings.LayerNorm")

    # additive attention mask [B, 1, 1, T]: 0 where attended, -1e4 where padded
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = g.op(
        "Mul",
        [
            g.op("Sub", [g.const(np.array(1.0, np.float32), "one"), mask_f]),
            g.const(np.array(-10000.0, np.float32), "neg"),
        ],
    )
    mask_bias = g.op("Unsqueeze", [mask_bias, i64(1, 2)])
    split_heads = i64(0, 0, heads, head_dim)
    merge_heads = i64(0, 0, hidden)
    scale = g.const(np.array(1.0 / math.sqrt(head_dim), np.float32), "scale")
    sqrt2 = g.const(np.array(math.sqrt(2.0), np.float32), "sqrt2")
    half = g.const(np.array(0.5, np.float32), "half")
    one = g.const(np.array(1.0, np.float32), "one")

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"

        def heads_first(t: str) -> str:
            return g.op("Transpose", [g.op("Reshape", [t, split_heads])], perm=[0, 2, 1, 3])

        q = heads_first(dense(x, f"{p}.attention.self.query"))
        k = heads_first(dense(x, f"{p}.attention.self.key"))
        v = heads_first(dense(x, f"{p}.attention.self.value"))
        scores = g.op(
            "Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale]
        )
        probs = g.op("Softmax", [g.op("Add", [scores, mask_bias])], axis=-1)
        context = g.op(
            "Reshape",
            [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_heads],
        )
        x = layer_norm(
            g.op("Add", [x, dense(context, f"{p}.attention.output.dense")]),
            f"{p}.attention.output.LayerNorm",
        )
        inner = dense(x, f"{p}.intermediate.dense")
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [inner, half]),
                g.op("Add", [one, g.op("Erf", [g.op("Div", [inner, sqrt2])])]),
            ],
        )
        x = layer_norm(g.op("Add", [x, dense(gelu, f"{p}.output.dense")]), f"{p}.output.LayerNorm")

    tokens = g.op("Identity", [x], "token_embeddings")
    # mean pooling over real tokens, then L2 normalisation (sentence-transformers' head)
    mask3 = g.op("Unsqueeze", [mask_f, i64(2)])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), i64(1)], keepdims=0)
    counts = g.op(
        "Max",
        [
            g.op("ReduceSum", [mask3, i64(1)], keepdims=0),
            g.const(np.array(1e-9, np.float32), "tiny"),
        ],
    )
    mean = g.op("Div", [summed, counts])
    norm = g.op(
        "Max",
        [
            g.op("ReduceL2", [mean, i64(1)], keepdims=1),
            g.const(np.array(1e-12, np.float32), "tiny"),
        ],
    )
    sentence = g.op("Div", [mean, norm])

    g.nodes.append(helper.make_node("Identity", [sentence], ["sentence_embedding"]))
    g.nodes.append(helper.make_node("Identity", [tokens], ["token_embeddings"]))
    graph = helper.make_graph(
        g.nodes,
        "bert_sentence_encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", hidden]
            ),
            helper.make_tensor_value_info(
                "token_embeddings", TensorProto.FLOAT, ["batch", "seq", hidden]
            ),
        ],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memstream"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=False)
    return model
