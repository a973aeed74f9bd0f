"""A small softmax policy (observation -> action distribution), in numpy and in ONNX.

One hidden tanh layer: `p = softmax(tanh(x W1 + b1) W2 + b2)`. It is the student the
distillation processor fits (`memstream.models.distill`) and the policy the example's
learning agents train (`memstream.eval.distill`), so an agent can start from a student by
loading its weights. Training is in float64; the ONNX model holds float32 weights, and
`from_onnx` reads them back, so what an agent fetches is exactly what it runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PARAMETERS = ("w1", "b1", "w2", "b2")
OPSET = 17


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class SoftmaxPolicy:
    """Weights of the policy; `probabilities` and `gradients` are its forward and backward."""

    w1: np.ndarray  # (observation_dim, hidden)
    b1: np.ndarray  # (hidden,)
    w2: np.ndarray  # (hidden, actions)
    b2: np.ndarray  # (actions,)

    @classmethod
    def initial(
        cls, observation_dim: int, actions: int, hidden: int = 16, *, seed: int = 0
    ) -> SoftmaxPolicy:
        """Glorot-uniform hidden layer, a near-zero output layer (a near-uniform policy)."""
        if observation_dim < 1 or actions < 2 or hidden < 1:
            raise ValueError("need observation_dim >= 1, actions >= 2 and hidden >= 1")
        rng = np.random.default_rng(seed)
        bound = np.sqrt(6.0 / (observation_dim + hidden))
        return cls(
            w1=rng.uniform(-bound, bound, (observation_dim, hidden)),
            b1=np.zeros(hidden),
            w2=rng.normal(0.0, 0.01, (hidden, actions)),
            b2=np.zeros(actions),
        )

    @property
    def observation_dim(self) -> int:
        return int(self.w1.shape[0])

    @property
    def actions(self) -> int:
        return int(self.w2.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[1])

    def copy(self) -> SoftmaxPolicy:
        return SoftmaxPolicy(*(getattr(self, name).copy() for name in PARAMETERS))

    def forward(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hidden activations (N, hidden), action probabilities (N, actions))."""
        x = np.atleast_2d(np.asarray(observations, dtype=np.float64))
        h = np.tanh(x @ self.w1 + self.b1)
        return h, softmax(h @ self.w2 + self.b2)

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        return self.forward(observations)[1]

    def gradients(
        self, observations: np.ndarray, hidden: np.ndarray, logit_grad: np.ndarray
    ) -> dict[str, np.ndarray]:
        """d loss / d weights, given d loss / d logits (N, actions) for these rows."""
        x = np.atleast_2d(np.asarray(observations, dtype=np.float64))
        dh = (logit_grad @ self.w2.T) * (1.0 - hidden**2)
        return {
            "w1": x.T @ dh,
            "b1": dh.sum(axis=0),
            "w2": hidden.T @ logit_grad,
            "b2": logit_grad.sum(axis=0),
        }

    def as_float32(self) -> SoftmaxPolicy:
        """The weights rounded as the ONNX model holds them (what a fetching agent runs)."""
        return SoftmaxPolicy(
            *(getattr(self, name).astype(np.float32).astype(np.float64) for name in PARAMETERS)
        )

    def weights_sha256(self) -> str:
        """Digest of the float32 weights: equal digests mean bit-identical policies."""
        digest = hashlib.sha256()
        for name in PARAMETERS:
            digest.update(np.ascontiguousarray(getattr(self, name), dtype="<f4").tobytes())
        return digest.hexdigest()

    def to_onnx(self, metadata: dict[str, str] | None = None) -> bytes:
        """An ONNX model `observation` [N, d] -> `probabilities` [N, actions]."""
        inits = [
            numpy_helper.from_array(getattr(self, name).astype(np.float32), name)
            for name in PARAMETERS
        ]
        nodes = [
            helper.make_node("MatMul", ["observation", "w1"], ["xw1"]),
            helper.make_node("Add", ["xw1", "b1"], ["z1"]),
            helper.make_node("Tanh", ["z1"], ["h"]),
            helper.make_node("MatMul", ["h", "w2"], ["hw2"]),
            helper.make_node("Add", ["hw2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ]
        graph = helper.make_graph(
            nodes,
            "memstream_student_policy",
            [
                helper.make_tensor_value_info(
                    "observation", TensorProto.FLOAT, ["N", self.observation_dim]
                )
            ],
            [
                helper.make_tensor_value_info(
                    "probabilities", TensorProto.FLOAT, ["N", self.actions]
                )
            ],
            initializer=inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memstream"
        )
        model.ir_version = 8  # readable by every onnxruntime this package supports
        for key, value in sorted((metadata or {}).items()):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(model)
        return model.SerializeToString()

    @classmethod
    def from_onnx(cls, data: bytes) -> SoftmaxPolicy:
        """The weights of a model `to_onnx` made (ValueError if it is not one)."""
        model = onnx.load_from_string(data)
        found = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        missing = [name for name in PARAMETERS if name not in found]
        if missing:
            raise ValueError(f"not a memstream student policy: no {', '.join(missing)}")
        return cls(*(found[name].astype(np.float64) for name in PARAMETERS))


class Adam:
    """Adam steps on a policy's weights (the distillation fit and the example's learners)."""

    def __init__(self, policy: SoftmaxPolicy, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self.moments = {name: np.zeros_like(getattr(policy, name)) for name in PARAMETERS}
        self.squares = {name: np.zeros_like(getattr(policy, name)) for name in PARAMETERS}
        self.steps = 0

    def step(self, policy: SoftmaxPolicy, grads: dict[str, np.ndarray]) -> None:
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        self.steps += 1
        for name in PARAMETERS:
            self.moments[name] = beta1 * self.moments[name] + (1 - beta1) * grads[name]
            self.squares[name] = beta2 * self.squares[name] + (1 - beta2) * grads[name] ** 2
            m_hat = self.moments[name] / (1 - beta1**self.steps)
            v_hat = self.squares[name] / (1 - beta2**self.steps)
            update = self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
            setattr(policy, name, getattr(policy, name) - update)
