"""torch-only kernel checks, run in the torch subprocess of ``test_kernels.py``."""

from __future__ import annotations

import traceback

import numpy as np
import torch
import torch.nn.functional as F

from keras_ls._backend import sparse_smoothed_crossentropy as kernel


def torch_matches_f_cross_entropy():
    """Values and gradients equal F.cross_entropy(label_smoothing=a), eager and compiled."""
    rng = np.random.default_rng(5)
    for n, k in [(7, 2), (16, 10), (4, 1000)]:
        z0 = torch.tensor(rng.normal(size=(n, k)) * 5, dtype=torch.float32)
        y = torch.tensor(rng.integers(0, k, n))
        w = torch.tensor(rng.normal(size=n), dtype=torch.float32)
        for a in (0.0, 0.1, 0.37, 1.0):
            ref_z = z0.clone().requires_grad_()
            ref = F.cross_entropy(ref_z, y, label_smoothing=a, reduction="none")
            (ref_g,) = torch.autograd.grad(ref, ref_z, w)
            for fn in (kernel, torch.compile(kernel, fullgraph=True)):
                z = z0.clone().requires_grad_()
                got = fn(z, y.int(), torch.tensor(a), None)
                (g,) = torch.autograd.grad(got, z, w)
                torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
                torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-7)


def torch_retain_graph():
    """A second backward of a retained graph gives the same gradient (no buffer reuse)."""
    z = torch.randn(5, 8, requires_grad=True)
    y = torch.randint(0, 8, (5,), dtype=torch.int32)
    loss = kernel(z, y, 0.1).sum()
    (g1,) = torch.autograd.grad(loss, z, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    p = torch.softmax(z.detach(), 1)
    want = p - 0.1 / 8
    want[torch.arange(5), y.long()] -= 0.9
    torch.testing.assert_close(g1, want)


def torch_in_place_only_when_safe():
    """Backward reuses the saved buffer in a plain backward, never with retain_graph=True.

    Guards the private autograd call the kernel relies on: if it moved, the
    kernel would silently fall back to the slower out-of-place path.
    """
    from keras_ls._backend.torch import _may_overwrite_saved

    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            seen.append(_may_overwrite_saved())
            return g * 2

    x = torch.ones(3, requires_grad=True)
    Probe.apply(x).sum().backward()
    Probe.apply(x).sum().backward(retain_graph=True)
    assert seen == [True, False], seen


def torch_compile_no_break():
    """torch.compile sees one graph: no graph break, with and without a prior."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    prior = np.full(6, 1 / 6)
    z = torch.randn(4, 6, requires_grad=True)
    y = torch.randint(0, 6, (4,), dtype=torch.int32)
    a = torch.tensor(0.2)
    for p in (None, prior):
        fn = torch.compile(lambda v, p=p: kernel(v, y, a, p).mean())
        fn(z).backward()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])


def run_torch_extra() -> dict[str, str]:
    results = {}
    checks = (
        torch_matches_f_cross_entropy,
        torch_retain_graph,
        torch_in_place_only_when_safe,
        torch_compile_no_break,
    )
    for fn in checks:
        try:
            fn()
            results[fn.__name__] = "ok"
        except Exception:  # noqa: BLE001 - reported to the parent test
            results[fn.__name__] = traceback.format_exc(limit=6)
    return results
