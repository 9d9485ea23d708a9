"""environment.yml (conda users) must carry exactly the pins of pyproject.toml (make run/test)."""
import re
import tomllib

import yaml

from zfutils.paths import PROJECT_ROOT


def test_environment_yml_matches_pyproject_pins():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pins = {re.split("==", d)[0].lower(): d for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {re.split("==", d)[0].lower(): d for d in pip_section if "==" in d}
    assert conda_pins == pins
    assert "python=3.11" in env["dependencies"]
    assert pins["torch"] == "torch==2.14.1" and pins["torchvision"] == "torchvision==0.29.1"
