"""The toolkit's version, in a module that imports nothing, so any layer can read it without importing the package
root (the run log stamps it on every row and in every image file). ``kandinsky_nb.__version__`` is this value."""

__version__ = "0.1.0"
