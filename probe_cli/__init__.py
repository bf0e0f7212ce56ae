"""probe: look inside TensorFlow/Keras models, dump any tensor to HDF5."""

__version__ = "0.1.0"
