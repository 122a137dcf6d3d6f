"""surge: SuRGe 4x image super-resolution (arXiv 2404.06294) as a library and CLI.

Public API::

    import surge
    model = surge.load_model("default", device="auto", precision="auto")  # or "bicubic", a bundled name, a file
    model.scale, model.precisions, model.receptive_radius, model.trained   # what it needs and can do
    sr = surge.upscale(pil_image_or_array, model=model, tile="auto")      # the model keeps its engine
    sr_batch = model(lr_batch)                                              # float (B, C, h, w) in [0, 1]
"""

__version__ = "0.1.0"

__all__ = ["BACKENDS", "PRECISIONS", "SRModel", "__version__", "load_model", "upscale"]

# What ``precision=`` and ``backend=`` accept (plain tuples: the CLI builds its options from
# them without importing torch).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnxruntime")


def upscale(image, model="default", **kwargs):
    """Upscale a PIL image or numpy array x4; see :func:`surge.inference.upscale.upscale`."""
    from surge.inference.upscale import upscale as _upscale

    return _upscale(image, model=model, **kwargs)


def __getattr__(name):
    # Lazy: importing torch costs ~1 s, which `surge --help` and `surge --version` don't need.
    if name in ("load_model", "SRModel"):
        from surge.inference import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'surge' has no attribute {name!r}")
