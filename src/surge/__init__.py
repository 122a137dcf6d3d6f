"""surge: SuRGe 4x image super-resolution (arXiv 2404.06294) as a library and CLI.

Public API::

    import surge
    model = surge.load_model("default")          # or "bicubic", a bundled name, a .safetensors path
    sr = surge.upscale(pil_image_or_array, model=model, tile="auto", precision="auto")
"""

__version__ = "0.1.0"

__all__ = ["SRModel", "__version__", "load_model", "upscale"]


def upscale(image, model="default", **kwargs):
    """Upscale a PIL image or numpy array x4; see :func:`surge.inference.upscale.upscale`."""
    from surge.inference.upscale import upscale as _upscale

    return _upscale(image, model=model, **kwargs)


def __getattr__(name):
    # Lazy: importing torch costs ~1 s, which `surge --help` and `surge --version` don't need.
    if name in ("load_model", "SRModel"):
        from surge.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'surge' has no attribute {name!r}")
