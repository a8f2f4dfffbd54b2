"""Measuring throughput: timers, peak memory, model FLOPs and MFU, host-sync counting.

The pieces ``zoo bench`` and the scripts in ``benchmarks/`` share, so that the plain-library loop
and the zoo are measured with the same clock:

- :mod:`.timing`: :class:`~.timing.Timer` (CUDA events on a GPU, ``perf_counter`` elsewhere; it
  synchronises once, at the end) and :class:`~.timing.StepTimer`, a Trainer callback timing the
  optimizer steps after a warmup.
- :mod:`.memory`: :class:`~.memory.PeakMemory`, the peak allocated GPU memory of a block (on the
  CPU, the process's peak resident set, labelled as such).
- :mod:`.flops`: FLOPs of a call (``torch.utils.flop_counter``), the peak TFLOP/s of known GPUs,
  and model-FLOPs utilisation.
- :mod:`.syncs`: :class:`~.syncs.HostSyncCounter`, which counts the operations that make the host
  wait for the device (``.item()``, ``nonzero``...) on any device, the CPU included.
- :mod:`.runner`: :func:`~.runner.bench_model`, train and inference images/s of any zoo model
  through the public API (``Trainer.fit`` and ``model.predict``) on synthetic data from its task.

Importing this package does not import torch; the sub-modules do.
"""
