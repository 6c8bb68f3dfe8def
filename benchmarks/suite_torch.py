"""The benchmark suite's PyTorch peer (``nn.LSTM`` / ``nn.GRU``) and the float64 reference.

Imports only torch and numpy, so that its worker process never starts XLA's thread pool.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from benchmarks.suite_types import Bench, Impl, Model

_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _module(model: Model, weights: dict, dtype, device) -> torch.nn.Module:
    input_size = weights["weight_ih_l0"].shape[1]
    hidden_size = weights["weight_hh_l0"].shape[1]
    module = _MODULES[model.cell](
        input_size,
        hidden_size,
        num_layers=model.layers,
        bidirectional=model.bidirectional,
        batch_first=True,
    ).to(device=device, dtype=dtype)
    module.load_state_dict({name: torch.from_numpy(w) for name, w in weights.items()})
    return module


def _run(module: torch.nn.Module, model: Model, x: torch.Tensor) -> torch.Tensor:
    """All outputs (B, T, H·directions); with lengths, a packed sequence run, zeros past the end."""
    if model.lengths is None:
        return module(x)[0]
    lengths = torch.tensor(model.lengths)  # on the CPU, as packing wants
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, True, enforce_sorted=False)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(
        module(packed)[0], True, total_length=x.shape[1]
    )
    return out


def build(model: Model, weights: dict) -> Bench:
    module = _module(model, weights, torch.float32, _DEVICE)

    def forward(x):
        with torch.inference_mode():
            return _run(module, model, x)

    def train(x):
        module.zero_grad(set_to_none=True)
        loss = _run(module, model, x).sum()
        loss.backward()
        return loss

    def sync(result):
        if _DEVICE == "cuda":
            torch.cuda.synchronize()

    return Bench(
        forward=forward,
        train=train,
        to_input=lambda x: torch.from_numpy(x).to(_DEVICE),
        output=lambda y: y.detach().cpu().numpy(),
        grads=lambda loss: {n: p.grad.detach().cpu().numpy() for n, p in module.named_parameters()},
        sync=sync,
    )


def reference(model: Model, weights: dict, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Outputs and gradients (of the sum of the outputs) in float64 on the CPU."""
    module = _module(model, weights, torch.float64, "cpu")
    out = _run(module, model, torch.from_numpy(x.astype(np.float64)))
    out.sum().backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return out.detach().numpy(), grads


def full_precision() -> None:
    """No TF32 on a GPU, for the numerics check."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


IMPLS = {
    "torch": Impl("torch", build, note=f"nn.LSTM / nn.GRU on {_DEVICE}; cl: packed sequences"),
}


def setup(threads: int) -> dict:
    if _DEVICE == "cpu":
        torch.set_num_threads(threads)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\d.]+)", torch.__config__.show())
    return {
        "torch_device": _DEVICE,
        "torch_threads": torch.get_num_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "onednn": onednn.group(1) if onednn else "",
    }
