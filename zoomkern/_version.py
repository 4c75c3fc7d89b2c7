# The one version source: setup (pyproject's dynamic version) and zoomkern.__version__ read it.
__version__ = "0.1.0"
