"""Training pairs: HR crops with LR made by MATLAB-compatible bicubic or by a real-world degradation model."""
