"""zfutils: the package behind the study's notebooks (data, models, training, CAMs, clustering)."""
__version__ = "0.1.0"
