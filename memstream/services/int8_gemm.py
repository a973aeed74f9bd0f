"""The int8 first pass of subscription matching: an exact integer GEMM on ONNX Runtime."""

from __future__ import annotations

import threading

import numpy as np

from memstream.logging import get_logger

log = get_logger("memstream.matcher")

SUB_LEVELS = 127
"""Subscription codes are in [-127, 127], stored as uint8 with an offset of 128."""
QUERY_LEVELS = 63
"""Memory codes are in [-63, 63]: x86 integer GEMM kernels without VNNI add pairs of
u8 x s8 products in int16, and 2 * 255 * 63 < 2**15 keeps that sum from saturating."""


class _Int8Gemm:
    """`(a - 128) @ b` in exact int32 arithmetic on ONNX Runtime's MatMulInteger: `a` is
    (n, dim) uint8 (subscription codes + 128), `b` is (dim, m) int8 (memory codes)."""

    def __init__(self, dim: int) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        from memstream.models.providers import session_options

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b", "a_zero"], ["y"])],
            "matcher_int8",
            [
                helper.make_tensor_value_info("a", TensorProto.UINT8, [None, dim]),
                helper.make_tensor_value_info("b", TensorProto.INT8, [dim, None]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [None, None])],
            initializer=[numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        import onnxruntime as ort

        # spin=False: the worker's model thread shares the cores with this one
        self.session = ort.InferenceSession(
            model.SerializeToString(),
            sess_options=session_options(spin=False),
            providers=["CPUExecutionProvider"],
        )

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"a": a, "b": b})[0]

    def exact(self, dim: int) -> bool:
        """Whether this machine's kernel is exact on the extremes of the code ranges (a
        saturating kernel would otherwise drop matches silently)."""
        rng = np.random.default_rng(0)
        a = rng.integers(1, 256, (600, dim)).astype(np.uint8)
        a[:3], a[3:6] = 255, 1  # +127 and -127 after the offset
        for m in (1, 7, 64):
            b = rng.integers(-QUERY_LEVELS, QUERY_LEVELS + 1, (dim, m)).astype(np.int8)
            b[:, 0] = QUERY_LEVELS
            if m > 1:
                b[:, 1] = -QUERY_LEVELS
            want = (a.astype(np.int64) - 128) @ b.astype(np.int64)
            if not np.array_equal(self(a, b).astype(np.int64), want):
                return False
        return True


_engines: dict[int, _Int8Gemm | None] = {}
_engines_lock = threading.Lock()


def int8_engine(dim: int) -> _Int8Gemm | None:
    """The int8 GEMM for `dim`, or None when onnxruntime is missing or not exact here."""
    with _engines_lock:
        if dim not in _engines:
            engine: _Int8Gemm | None
            try:
                engine = _Int8Gemm(dim)
                if not engine.exact(dim):
                    log.warning("int8 GEMM is not exact on this machine; matching in float32")
                    engine = None
            except Exception as err:  # no onnxruntime: float32 BLAS does the first pass
                log.info("int8 GEMM unavailable; matching in float32", error=str(err))
                engine = None
            _engines[dim] = engine
        return _engines[dim]
