"""Images in and out: decoding, HR/LR pairs, crops, their sources and HDF5 cache, and video."""
