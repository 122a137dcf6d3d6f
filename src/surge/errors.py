"""Errors meant for users: their message is one line that names the file and the problem.

The CLI prints ``surge: error: <message>`` for these and exits non-zero, never a traceback.
"""


class SurgeError(Exception):
    """Base class for expected, user-facing failures."""


class ModelFileError(SurgeError):
    """A weights file is missing, truncated, foreign or does not match its architecture."""


class ImageReadError(SurgeError):
    """An input image cannot be read (empty, truncated, not an image, too large)."""


class ImageValueError(SurgeError, ValueError):
    """An image array's pixel values cannot be upscaled as given (NaN/inf, float outside [0, 1])."""


class ImageWriteError(SurgeError):
    """An output cannot be written (folder not writable, would overwrite an input...)."""


class OutputExistsError(ImageWriteError):
    """An output file exists (it may have appeared meanwhile) and replacing it was not allowed."""


class UntrainedModelError(SurgeError):
    """An untrained architecture preset was asked to produce images or scores."""


class ConfigError(SurgeError):
    """An experiment or model configuration is invalid."""


class DatasetError(SurgeError):
    """A dataset folder is missing or malformed."""
