"""Galleries of known faces: the HDF5 store, search, building and recognizing."""
