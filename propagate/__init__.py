"""propagate: statistics of signal propagation in deep ReLU networks."""
__version__ = "0.1.0"
