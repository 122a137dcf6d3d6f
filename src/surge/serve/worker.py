"""The server's one call into the library: ``surge.inference.pipeline.Upscaler.process_file``,
the per-file path ``surge upscale`` (and a Ray batch) runs too: model choice per file, frames,
-s, metadata, atomic writes.

Requests differ in options that do not change the network (scale, quality, format), so each
compute worker keeps its loaded models in one place and hands them to every ``Upscaler`` it
builds, instead of loading a model again whenever a request changes the scale.
"""

from __future__ import annotations

from surge.inference.pipeline import FileResult, UpscaleOptions, Upscaler

__all__ = ["FileResult", "UpscaleOptions", "UpscalerCache"]


class _SharingUpscaler(Upscaler):
    """An Upscaler that takes its models from (and adds them to) a worker's shared store."""

    def __init__(self, options: UpscaleOptions, shared: dict):
        super().__init__(options)
        self._shared = shared

    def model(self, name: str):
        o = self.options
        key = (name, o.device, o.precision, self.backend, o.allow_untrained)
        if key not in self._shared:
            self._shared[key] = super().model(name)
        return self._shared[key]


class UpscalerCache:
    """Upscalers for one compute worker (one thread on one device, so no lock): a new one per
    set of options, all sharing the worker's loaded models."""

    def __init__(self):
        self._models: dict = {}

    def get(self, options: UpscaleOptions) -> Upscaler:
        return _SharingUpscaler(options, self._models)
