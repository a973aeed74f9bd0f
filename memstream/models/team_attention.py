"""The team attention block as an ONNX graph (SRMT-style pooling of agent states).

Nothing is learned: the attention block is parameterised by one fixed orthogonal matrix R
(numpy, fixed seed) so that it works on the embedder's space as it is.

- Query, keys and values are projected by R (initializers `W_q`, `W_k_t`, `W_v`); head h
  owns columns `[h*dh, (h+1)*dh)` of R, a random `dh`-dimensional subspace of the
  embedding. Q and K share R because, with no training, only a shared projection makes
  `q . k` a similarity (two unrelated rotations would score agents at random).
- The scores are scaled by `heads / temperature` instead of `1/sqrt(dh)`: for unit vectors
  a head's dot product is about `cosine / heads`, so each head's softmax is a softmax of
  cosine similarity at `temperature` (the `1/sqrt(dh)` rule assumes learned projections with
  unit-variance coordinates).
- The output projection is R transposed, so the concatenated heads map back into the
  embedding space: the pooled vector is the sum over heads of the head's subspace of the
  attention-weighted states, L2-normalised, and can be compared with memory vectors by
  cosine. Were all heads' weights equal it would be the weighted mean of the states.
- The team query (`pool`) is the L2-normalised masked mean of the states: the team's centre
  asks which agents are most typical of it. The query-driven graph (`attend`, `rank`) takes
  the query vector as its attention query instead.

The graph applies the per-head projections where they are cheapest (the query through
the key projection, the value projection after the weighted sum), which by associativity is
the same attention; `tests/unit/test_team_state.py` checks it against the literal numpy form.

Padding agents (mask 0) get an additive -1e9 before the softmax: their weight is exactly 0
and, with zero padding states, they change nothing. Same inputs in the same order give
byte-identical outputs: agents are kept in sorted order and nothing is random at run time.
(A team pooled in a batch of another shape may differ in the last float bits: ONNX Runtime
blocks its GEMMs by shape.)
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIM = 384
HEADS = 4
TEMPERATURE = 0.1
"""Softmax temperature on cosine similarity: a cosine 0.1 higher weighs e (2.7x) more."""
SEED = 20240601
"""Seed of the orthogonal projection; a different seed is a different (equally valid) model."""
OPSET = 17
MASK_BIAS = 1e9

QueryKind = Literal["team", "input"]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=4)
def projection(dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """The fixed orthogonal matrix R (dim x dim, float32, read-only): QR of a seeded
    Gaussian, with the signs fixed so it does not depend on the LAPACK's sign convention.
    Cached: both graphs use it, and a QR can take a second on a busy machine."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    return _frozen(np.ascontiguousarray(q, dtype=np.float32))


def _l2(nodes: list[onnx.NodeProto], x: str, out: str) -> None:
    """x / max(|x|, 1e-6) over the last axis: a zero vector stays zero instead of NaN."""
    nodes += [
        helper.make_node("ReduceSumSquare", [x], [f"{out}_sq"], axes=[-1], keepdims=1),
        helper.make_node("Max", [f"{out}_sq", "eps"], [f"{out}_sq1"]),
        helper.make_node("Sqrt", [f"{out}_sq1"], [f"{out}_norm"]),
        helper.make_node("Div", [x, f"{out}_norm"], [out]),
    ]


def build_team_attention(
    dim: int = DIM,
    heads: int = HEADS,
    *,
    query: QueryKind = "team",
    temperature: float = TEMPERATURE,
    seed: int = SEED,
) -> onnx.ModelProto:
    """The multi-head attention block as an ONNX model (opset 17).

    Inputs `states` float32 [batch, agents, dim], `mask` float32 [batch, agents] (1 present,
    0 padding) and, for `query="input"`, `query` float32 [batch, dim]. Outputs `pooled`
    float32 [batch, dim] (unit length) and `weights` float32 [batch, heads, agents].

    With one query per team the per-head projections are applied where they are cheapest,
    by associativity, which is the same attention: `(q Wq_h)(S Wk_h)^T = ((q Wq_h) Wk_h^T) S^T`
    (the query goes through the key projection instead of every agent's state) and
    `w_h (S Wv_h) = (w_h S) Wv_h` (the value projection after the weighted sum). The work
    per team is then O(heads x agents x dim) instead of O(agents x dim^2).
    """
    if dim % heads:
        raise ValueError(f"dim {dim} is not divisible by heads {heads}")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    dh = dim // heads
    r = projection(dim, seed)
    per_head = r.reshape(dim, heads, dh)  # head h: columns [h*dh, (h+1)*dh) of R
    f32 = np.float32
    initializers = [
        numpy_helper.from_array(r, "W_q"),  # [D, H*dh]: the heads' query projections
        # [H, dh, D]: the heads' key projections, transposed (Wk_h^T)
        numpy_helper.from_array(np.ascontiguousarray(per_head.transpose(1, 2, 0)), "W_k_t"),
        # [H, D, dh]: the heads' value projections (Wv_h)
        numpy_helper.from_array(np.ascontiguousarray(per_head.transpose(1, 0, 2)), "W_v"),
        numpy_helper.from_array(np.ascontiguousarray(r.T), "W_out"),  # [H*dh, D]
        numpy_helper.from_array(np.array(heads / temperature, f32), "scale"),
        numpy_helper.from_array(np.array(MASK_BIAS, f32), "mask_bias"),
        numpy_helper.from_array(np.array(1.0, f32), "one"),
        numpy_helper.from_array(np.array(1e-12, f32), "eps"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([0, heads, dh], np.int64), "shape_q"),
        numpy_helper.from_array(np.array([0, 1, -1], np.int64), "shape_bias"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "shape_ctx"),
    ]
    nodes: list[onnx.NodeProto] = []
    inputs = [
        helper.make_tensor_value_info("states", TensorProto.FLOAT, ["batch", "agents", dim]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "agents"]),
    ]
    if query == "team":  # the masked mean of the states
        nodes += [
            helper.make_node("Unsqueeze", ["mask", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["states", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),
            helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], keepdims=1),
            helper.make_node("Max", ["count", "one"], ["count1"]),
            helper.make_node("Div", ["total", "count1"], ["query_raw"]),
        ]
    elif query == "input":
        inputs.append(helper.make_tensor_value_info("query", TensorProto.FLOAT, ["batch", dim]))
        nodes.append(helper.make_node("Identity", ["query"], ["query_raw"]))
    else:
        raise ValueError(f"unknown query kind {query!r}: team or input")
    _l2(nodes, "query_raw", "q")
    nodes += [
        # per-head queries q Wq_h: [B, D] -> [B, H, dh] -> [H, B, dh] (one GEMM per head,
        # not one per team and head)
        helper.make_node("MatMul", ["q", "W_q"], ["q_proj"]),
        helper.make_node("Reshape", ["q_proj", "shape_q"], ["q_heads"]),
        helper.make_node("Transpose", ["q_heads"], ["q_hb"], perm=[1, 0, 2]),
        # through the key projections: (q Wq_h) Wk_h^T, [H, B, D] -> [B, H, D]
        helper.make_node("MatMul", ["q_hb", "W_k_t"], ["qk_hb"]),
        helper.make_node("Transpose", ["qk_hb"], ["qk"], perm=[1, 0, 2]),
        # scores (q Wq_h)(S Wk_h)^T: [B, H, D] x [B, D, A] -> [B, H, A]
        helper.make_node("Transpose", ["states"], ["states_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qk", "states_t"], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        # padding: an additive -1e9, then softmax over the agents per head
        helper.make_node("Sub", ["mask", "one"], ["mask_off"]),
        helper.make_node("Mul", ["mask_off", "mask_bias"], ["bias"]),
        helper.make_node("Reshape", ["bias", "shape_bias"], ["bias3"]),
        helper.make_node("Add", ["scaled", "bias3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["weights"], axis=-1),
        # per-head context w_h (S Wv_h) = (w_h S) Wv_h: [B, H, A] x [B, A, D] -> [B, H, D],
        # then [H, B, D] x [H, D, dh] -> [H, B, dh] -> [B, H, dh]
        helper.make_node("MatMul", ["weights", "states"], ["mixed"]),
        helper.make_node("Transpose", ["mixed"], ["mixed_hb"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["mixed_hb", "W_v"], ["ctx_hb"]),
        helper.make_node("Transpose", ["ctx_hb"], ["ctx"], perm=[1, 0, 2]),
        # heads concatenated [B, H*dh], output projection back to the embedding space
        helper.make_node("Reshape", ["ctx", "shape_ctx"], ["ctx_flat"]),
        helper.make_node("MatMul", ["ctx_flat", "W_out"], ["out"]),
    ]
    _l2(nodes, "out", "pooled")
    outputs = [
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", dim]),
        helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", heads, "agents"]),
    ]
    graph = helper.make_graph(nodes, f"team_attention_{query}", inputs, outputs, initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="memstream.team_state",
    )
    model.ir_version = 8  # opset 17's IR; loadable by every onnxruntime >= 1.14
    return model


@functools.lru_cache(maxsize=8)
def model_bytes(
    dim: int = DIM,
    heads: int = HEADS,
    query: QueryKind = "team",
    temperature: float = TEMPERATURE,
    seed: int = SEED,
) -> bytes:
    """The serialized model, built once per parameter set and process."""
    model = build_team_attention(dim, heads, query=query, temperature=temperature, seed=seed)
    return model.SerializeToString()
