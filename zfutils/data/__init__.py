"""Data sources (synthetic zebrafish, AAU, CSV, folders), the one on-disk format, splits and
torch Datasets. `python -m zfutils.data` writes a data set from the command line."""
