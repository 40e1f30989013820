"""Pixel arithmetic that inference and training both stand on: MATLAB-style bicubic resizing
(:mod:`.imresize`) and uint8 <-> tensor conversions (:mod:`.convert`). Imports no other gleansr
layer, so the pipeline can resize the reference way without importing the training package."""
