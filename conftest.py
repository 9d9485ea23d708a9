"""Test session set-up shared by pytest and nbval: everything a run writes goes to a temporary
work folder (never the repository's runs/, data/ or figures/), and threads stay polite on 2 cores.

The work folder is removed when the session ends: a full run writes several GB there (the smoke
study of every backbone), and left-overs from earlier runs once filled a shared disk mid-run."""
import os
import shutil
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")
_OWN_WORKDIR = None
if "ZF_WORKDIR" not in os.environ:
    _OWN_WORKDIR = tempfile.mkdtemp(prefix="zf-test-work-")
    os.environ["ZF_WORKDIR"] = _OWN_WORKDIR


def pytest_unconfigure(config):
    """Remove the work folder this session made (a folder given by the user is left alone)."""
    if _OWN_WORKDIR is not None:
        shutil.rmtree(_OWN_WORKDIR, ignore_errors=True)
