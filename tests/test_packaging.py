"""What `pip install .` puts into site-packages: `tagger` alone (the tools
are `tagger.cli`; tools/ holds launchers for `python -m tools.<name>` in a
checkout)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_distribution_installs_only_the_tagger_package(tmp_path):
  subprocess.run([sys.executable, "setup.py", "-q", "egg_info",
                  "--egg-base", str(tmp_path)], cwd=REPO, check=True,
                 capture_output=True)
  (info,) = [p for p in os.listdir(tmp_path) if p.endswith(".egg-info")]
  top = (tmp_path / info / "top_level.txt").read_text().split()
  assert top == ["tagger"]
  scripts = (tmp_path / info / "entry_points.txt").read_text()
  assert "tagger-train = tagger.cli.train:run" in scripts


def test_every_tool_has_a_launcher_and_a_console_script():
  cli = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "tagger", "cli"))
               if f.endswith(".py") and f != "__init__.py")
  launchers = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "tools"))
                     if f.endswith(".py") and f != "__init__.py")
  assert cli == launchers
  setup = open(os.path.join(REPO, "setup.py")).read()
  for name in cli:
    assert f'"{name}"' in setup, name


def test_the_wheel_ships_the_configs_and_they_load_elsewhere(tmp_path):
  """The built wheel holds configs/ as tagger.configs; unpacked away from
  the checkout, configs load by name and by the checkout's relative path
  (which is not there), and compose by import (cpu.py imports demo.py)."""
  import zipfile  # pylint: disable=g-import-not-at-top
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "-w", str(tmp_path / "dist"), REPO],
                 check=True, capture_output=True, cwd=str(tmp_path))
  (wheel,) = os.listdir(tmp_path / "dist")
  with zipfile.ZipFile(tmp_path / "dist" / wheel) as archive:
    names = archive.namelist()
    archive.extractall(tmp_path / "site")
  configs = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                   if f.endswith(".py"))
  assert configs == sorted(n.split("/")[-1] for n in names
                           if n.startswith("tagger/configs/"))
  assert not [n for n in names if n.startswith("configs/")]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  code = ("import tagger; from tagger import settings; "
          "a = settings.load_config('cpu:stage2'); "
          "b = settings.load_config('configs/cpu.py:stage2'); "
          "c = settings.load_config('demo.py:stage2+multi_label'); "
          "print(tagger.configs.__path__[0], a == b, a.model.pca_head, "
          "c.source_weights)")
  shown = subprocess.run([sys.executable, "-c", code], cwd=str(elsewhere),
                         env={**os.environ,
                              "PYTHONPATH": str(tmp_path / "site")},
                         capture_output=True, text=True, check=True)
  where, same, fusion, weights = shown.stdout.split()
  assert where == str(tmp_path / "site" / "tagger" / "configs")
  assert (same, fusion, weights) == ("True", "True", "noisy=0.5")
