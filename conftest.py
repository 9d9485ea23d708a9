"""Test session set-up shared by pytest and nbval: everything a run writes goes to a temporary
work folder (never the repository's runs/, data/ or figures/), and threads stay polite on 2 cores."""
import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")
if "ZF_WORKDIR" not in os.environ:
    os.environ["ZF_WORKDIR"] = tempfile.mkdtemp(prefix="zf-test-work-")
