"""The CTEG text-to-expression model: train, sample, evaluate, render."""
