"""Training pairs: HR crops with LR made by MATLAB-compatible bicubic."""
