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
