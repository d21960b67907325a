"""ONNX export of a trained model folder, checked by running the file with onnxruntime.

``bidsaudit export MAPS --output model.onnx`` takes one run's best model
(``--fold``/``--seed``, default the first of each; ``--selection`` as in
predict), exports it with torch's TorchScript-based exporter (``dynamo=False``:
it needs no ``onnxscript`` and handles every registry model; torch warns that
it is deprecated, the warning is silenced here), with a dynamic batch axis,
then runs the same seeded inputs through PyTorch and onnxruntime and compares
the outputs. A difference above ``tolerance`` is a failed export (the file is
not left behind). The report (max abs diff, tolerance, shapes, opset, hashes)
is written beside the file as ``<output>.json`` and appended to the model
folder's ``maps.json`` under ``exports``. The ONNX graph takes what the model
takes: preprocessed samples (``preprocessing.json`` of the run says how).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from pathlib import Path
from typing import Any

from audit.bidsindex import read_json
from audit.errors import InputError
from audit.fsutil import atomic_write_bytes
from train.data import Preprocessing
from train.maps import MapsFolder, write_json
from train.samples import SampleSet

__all__ = ["export_onnx"]


def export_onnx(maps_dir: str | os.PathLike[str], output: str | os.PathLike[str], *, fold: int | None = None,
                seed: int | None = None, selection: str | None = None, opset: int = 17,
                tolerance: float = 1e-4, batch: int = 2) -> dict[str, Any]:
    """Export one run of a complete model folder to ONNX and verify it with onnxruntime.

    Returns
    -------
    dict
        The export report (also written to ``<output>.json`` and ``maps.json``).

    Raises
    ------
    InputError
        An incomplete or damaged model folder, an unknown fold or seed, onnx
        or onnxruntime not installed, or outputs that differ by more than
        ``tolerance`` (exit 2).
    """
    if selection not in (None, "loss", "metric"):
        raise InputError(None, field="--selection", expected="loss or metric", got=repr(selection))
    if not (tolerance > 0):
        raise InputError(None, field="--tolerance", expected="a positive number", got=repr(tolerance))
    maps = MapsFolder.open(Path(maps_dir))
    out = Path(output)
    if out.suffix != ".onnx":
        raise InputError(out, "the output name must end in .onnx", field="--output")
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        import torch
    except ImportError as err:
        raise InputError(None, f"ONNX export needs {err.name}, which is not installed",
                         expected="pip install 'bidsaudit[export]'") from None
    from train.loop import load_torch, n_outputs
    from train.models import build_model

    cfg = maps.config
    folds, seeds = list(maps.meta.get("folds") or []), list(maps.meta.get("seeds") or [])
    fold = folds[0] if fold is None else fold
    seed = seeds[0] if seed is None else seed
    if fold not in folds:
        raise InputError(maps.root, f"no fold {fold} in this model folder", field="--fold",
                         expected=", ".join(map(str, folds)))
    if seed not in seeds:
        raise InputError(maps.root, f"no seed {seed} in this model folder", field="--seed",
                         expected=", ".join(map(str, seeds)))
    run = maps.run_dir(fold, seed)
    try:
        prep = Preprocessing.from_dict(read_json(run / "preprocessing.json"))
    except (TypeError, KeyError, ValueError) as err:
        raise InputError(run / "preprocessing.json", f"malformed: {err}") from None
    sel = maps.selection_name("loss" if selection == "loss" else (cfg.main_metric[0] if selection == "metric"
                                                                  else None))
    weights = run / f"best-{sel}" / "model.pt"
    shape = SampleSet(np.zeros((1, *prep.shape), np.float32), [0], mode=cfg.mode, slice_axis=cfg.slice_axis,
                      slice_discard=cfg.slice_discard, patch_size=cfg.patch_size,
                      patch_stride=cfg.patch_stride).sample_shape()
    model = build_model(cfg.model, cfg.task, shape, n_outputs(cfg, prep), width=cfg.width)
    saved = load_torch(weights, torch.device("cpu"))
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise InputError(weights, "does not fit the recorded model: "
                             + "; ".join(ln.strip() for ln in str(err).splitlines()[:3] if ln.strip())) from None
    model.eval()

    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *shape), generator=gen)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["image"], output_names=["output"],
                          dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}}, opset_version=opset)
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    # compare on other inputs than the traced ones, with another batch size (the batch axis is dynamic)
    xs = torch.randn((batch + 1, *shape), generator=gen)
    with torch.no_grad():
        want = model(xs).numpy()
    have = sess.run(["output"], {"image": xs.numpy()})[0]
    if have.shape != want.shape:
        raise InputError(out, f"onnxruntime gives outputs of shape {have.shape}, PyTorch {want.shape}")
    diff = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
    report = {
        "file": str(out.resolve()), "sha256": "sha256:" + hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "maps": str(maps.root.resolve()),
        "fold": fold, "seed": seed, "weights": str(weights.relative_to(maps.root)), "opset": opset,
        "exporter": "torch.onnx (TorchScript, dynamo=False)", "input": {"name": "image", "shape": ["batch", *shape]},
        "output": {"name": "output", "shape": ["batch", *want.shape[1:]]}, "task": cfg.task, "model": cfg.model,
        "classes": prep.classes or None, "preprocessing": prep.to_dict(),
        "check": {"runtime": f"onnxruntime {ort.__version__}", "n_inputs": int(xs.shape[0]),
                  "max_abs_diff": diff, "tolerance": tolerance, "passed": diff <= tolerance},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }
    if not diff <= tolerance:
        raise InputError(out, f"the exported model differs from PyTorch by up to {diff:.3g} "
                         f"(tolerance {tolerance:g}); not written", field="--tolerance")
    atomic_write_bytes(out, data)
    write_json(out.with_name(out.name + ".json"), report)
    maps.meta.setdefault("exports", []).append(report)
    maps.save()
    return report
