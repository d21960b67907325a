"""The gated trainer: nothing trains until an audit certificate matches the data byte for byte.

Importing :mod:`train` imports neither torch nor MONAI; they are imported by
:func:`train_model` and :func:`predict` after the gate has opened.

Modules: :mod:`train.gate` (the gate: finds the certificate and opens only
on :func:`audit.certificate.verify_certificate`'s verdict; torch-free),
:mod:`train.config` (:class:`~train.config.TrainConfig`, every
hyperparameter), :mod:`train.items` (what a split table names),
:mod:`train.data` (decoding, the volume store, fitted preprocessing),
:mod:`train.tensorcache` (the content-addressed tensor cache, the memory
budget), :mod:`train.bank` (a split's volumes served one at a time),
:mod:`train.samples` (images, slices, patches, augmentation),
:mod:`train.models` (the network registry), :mod:`train.loop` (the training
loop), :mod:`train.distributed` (torchrun), :mod:`train.run` (a training call
after the gate), :mod:`train.metrics` (metrics and bootstrap CIs),
:mod:`train.maps` (the model folder), :mod:`train.predict` (inference that
refuses training participants), :mod:`train.api` (what the CLI calls).
"""

from __future__ import annotations

from train.api import predict, train_model

__all__ = ["predict", "train_model"]
