"""Algebra layers for training code: `from runtime.layers import AlgebraLinear`.

Features are counted in algebra elements; tensors use the element-major layout of DESIGN.md (component k
of element c at index c*d + k), and weights are the left factor.
"""
