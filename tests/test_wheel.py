"""The package as a user installs it: `pip wheel .`, installed without -e in a fresh venv.

The wheel must carry the shipped data (LMPD samples, geocoding reference, population,
boundaries) and find it with no checkout around it (`settings.DATA_ROOT` ->
``geo_lead/_shipped``), so `geo-lead zone check` and `geo-lead run` work from it. No network:
the wheel is built from a copy of the sources (never in the checkout), with this
interpreter's setuptools when it is new enough (>= 77) and else through pip's configured
index; it is installed with ``--no-index --no-deps``, and the fresh venv sees the test
venv's dependencies through a ``.pth`` line (never its editable geo_lead).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEO_LEAD_DATA_DIR")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _sources(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.gpkg", "*.gpkg-journal", "*.egg-info", "build")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("geo_lead", "data", "boundaries"):
        shutil.copytree(ROOT / name, dest / name, symlinks=True, ignore=ignore)
    return dest


@pytest.mark.slow
def test_wheel_builds_quietly_installs_and_runs(tmp_path: Path) -> None:
    import setuptools

    src = _sources(tmp_path / "src")
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(dist)]
    if int(setuptools.__version__.split(".")[0]) >= 77:
        cmd.append("--no-build-isolation")
    build = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    if build.returncode != 0 and "setuptools" in build.stderr and "No matching distribution" in build.stderr:
        pytest.skip("no setuptools >= 77 here and no package index to fetch it from")
    assert build.returncode == 0, build.stderr[-2000:]
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr
    wheels = list(dist.glob("geo_lead-*.whl"))
    assert len(wheels) == 1

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index",
                           "--no-deps", "-q", str(wheels[0])], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert inst.returncode == 0, inst.stderr[-2000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_geo_lead_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n", encoding="utf-8")

    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import geo_lead, geo_lead.settings as s; "
                            "print(geo_lead.__file__); print(s.DATA_ROOT)"],
                           capture_output=True, text=True, cwd=work, env=_env(), check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel, its own data

    geo = str(venv / "bin" / "geo-lead")
    check = subprocess.run([geo, "zone", "check", "--lat", "38.2587", "--lon", "-85.7930", "--json"],
                           capture_output=True, text=True, cwd=work, env=_env(), timeout=120)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["inside"] is True
    addr = subprocess.run([geo, "zone", "check", "--address", "2700 BLOCK W MADISON ST", "--json"],
                          capture_output=True, text=True, cwd=work, env=_env(), timeout=300)
    assert addr.returncode == 0, addr.stderr
    assert json.loads(addr.stdout)["match_type"] == "block"

    run = subprocess.run([geo, "run"], capture_output=True, text=True, cwd=work, env=_env(), timeout=1200)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:])
    for page in ("site_selection.html", "report.html", "zone_check.html"):
        assert (work / "maps" / page).is_file(), page
    assert (work / "data" / "lead.gpkg").is_file()
    again = subprocess.run([geo, "run"], capture_output=True, text=True, cwd=work, env=_env(), timeout=300)
    assert again.returncode == 0 and again.stdout.startswith("nothing changed"), again.stdout
