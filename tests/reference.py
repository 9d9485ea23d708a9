"""Where the golden vectors and checkpoint manifests live: $ZF_REFERENCE, else the project's
shared folder beside the repository (as CI lays it out), else this workplace's /work/shared."""
import os
from pathlib import Path

import pytest

from zfutils.paths import PROJECT_ROOT

CANDIDATES = [os.environ.get("ZF_REFERENCE"), PROJECT_ROOT.parent / "shared" / "reference", "/work/shared/reference"]
REFERENCE = next((Path(c) for c in CANDIDATES if c and Path(c).is_dir()), Path(CANDIDATES[1]))
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(),
                                     reason=f"no reference folder at {REFERENCE} (set ZF_REFERENCE)")
