"""``surge serve``: a local web page and HTTP API over the same file pipeline as ``surge upscale``.

``app.create_app(settings)`` builds the FastAPI app; ``jobs`` holds the bounded queue, one compute
worker per device and the job store (TTL, cancellation); ``uploads`` recognises uploads by their
decoded header and checks limits before any pixel is decoded; ``worker`` is the one call into the
library's pipeline. The page (``static/``) is plain HTML/JS/CSS shipped in the wheel.
"""

from surge.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
