"""Cost of the image quality metrics (audit.images.features) against the one decode of an image.

Run: PYTHONPATH=. python bench/bench_iqm.py  (a 176x240x256 int16 .nii.gz phantom, 1 mm)
"""
import os
import tempfile
import time

import nibabel as nib
import numpy as np

from audit.images import features as imagefeatures, imagefile, measures


def main() -> None:
    rng = np.random.default_rng(0)
    shape = (176, 240, 256)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    vol = np.where(r < 0.8, np.where(r < 0.5, 110.0, 70.0), 0.0) + np.abs(rng.normal(0, 5, shape))
    d = tempfile.mkdtemp()
    p = os.path.join(d, "a.nii.gz")
    nib.save(nib.Nifti1Image(vol.astype(np.int16), np.eye(4)), p)
    real = imagefeatures.quality_metrics
    times = {}
    for name, fn in (("with iqm", real), ("without iqm", lambda *a, **k: None)):
        measures.features.quality_metrics = fn
        best = []
        for _ in range(3):
            t = time.perf_counter()
            imagefile.summarise_file(p)
            best.append(time.perf_counter() - t)
        times[name] = min(best)
    measures.features.quality_metrics = real
    ref = vol.astype(np.float32)
    step = max(1, int(np.ceil((ref.size / measures.STATS_VOXELS) ** (1 / 3))))
    sub = np.ascontiguousarray(ref[::step, ::step, ::step])
    t = time.perf_counter()
    for _ in range(10):
        out = imagefeatures.quality_metrics(sub, voxel_volume_mm3=1.0, total_voxels=ref.size)
    iqm = (time.perf_counter() - t) / 10
    print(f"summarise_file (decode, hash, stats, thumbnail, fingerprint): {times['without iqm']:.3f} s without, "
          f"{times['with iqm']:.3f} s with the quality metrics")
    print(f"quality_metrics alone on the {sub.size}-voxel subsample (step {step}): {iqm * 1000:.1f} ms")
    print({k: v for k, v in (out or {}).items() if k != "histogram"})


if __name__ == "__main__":
    main()
