"""Running models on images: the compute engine, tiling, image I/O and the upscale API."""
