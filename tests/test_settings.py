"""The typed views of a config hold the defaults and check their values."""

import dataclasses
import os

import pytest

from tagger import settings
from tagger.train import schedules


def test_the_defaults_come_from_the_typed_views():
  config = settings.default_config()
  assert settings.model_config(config) == settings.ModelConfig()
  assert settings.schedule_config(config) == settings.ScheduleConfig()
  for field in dataclasses.fields(settings.ScheduleConfig):
    assert config.schedule[field.name] == field.default, field.name


@pytest.mark.parametrize("section,key,value,message", [
    ("model", "dropout", 1.0, "model.dropout=1.0: should be in"),
    ("model", "input_norm", "pcen", "model.input_norm='pcen'"),
    ("model", "freeze_epochs", -1, "model.freeze_epochs=-1"),
    ("schedule", "base_lr", 1e-2, "schedule.base_lr=0.01: should be above "
     "0 and at most max_lr"),
    ("schedule", "fine_tune_lrs", (1e-5,), "two LRs"),
    ("schedule", "cycle_step_epochs", 0.0, "cycle_step_epochs=0.0"),
])
def test_a_bad_value_is_one_line_naming_the_setting(section, key, value,
                                                    message):
  config = settings.default_config()
  config[section][key] = value
  view = (settings.model_config if section == "model"
          else settings.schedule_config)
  with pytest.raises(settings.SettingsError, match=message):
    view(config)


def test_an_unknown_key_is_refused():
  config = settings.default_config()
  config.model.dropuot = 0.1
  with pytest.raises(settings.SettingsError, match="dropuot"):
    settings.model_config(config)


def test_phases_give_the_triangular_lr_and_fresh_plateaus():
  schedule = settings.ScheduleConfig(cyclic_epochs=4, base_lr=1e-4,
                                     max_lr=1e-3, cycle_step_epochs=1.0,
                                     fine_tune_lrs=(1e-5, 3e-5))
  phases = schedules.Phases(schedule, steps_per_epoch=10)
  assert phases.lr(0, 0, 0, None) == pytest.approx(1e-4)
  assert phases.lr(0, 1, 0, None) == pytest.approx(1e-3)   # the peak
  assert phases.lr(0, 2, 0, None) == pytest.approx(1e-4)
  assert phases.length(0) == 4 and phases.length(2) == 100
  plateau = phases.plateau(2)
  assert plateau["lr"] == 3e-5 and plateau["stop_patience"] == 10
  assert phases.lr(2, 0, 5, plateau) == 3e-5


@pytest.mark.parametrize("key,value,message", [
    ("stage", 3, "config.stage=3: should be 1 or 2"),
    ("fold", "abc", "config.fold='abc': should be a fold number"),
    ("eval_batch_size", 0, "config.eval_batch_size=0: should be above 0"),
    ("select_best", "val_acc", "config.select_best='val_acc': should be "
     "val_loss, val_map3"),
    ("max_steps_per_epoch", -1, "config.max_steps_per_epoch=-1"),
    ("select_bset", "val_map3", r"unknown RunConfig keys \['select_bset'\]"),
])
def test_a_bad_run_setting_is_one_line_naming_it(key, value, message):
  config = settings.default_config()
  config[key] = value
  assert settings.run_config(settings.default_config()) == settings.RunConfig()
  with pytest.raises(settings.SettingsError, match=message):
    settings.run_config(config)


def test_config_file_takes_a_path_or_a_shipped_name(tmp_path, monkeypatch):
  import tagger.configs  # pylint: disable=g-import-not-at-top
  shipped = os.path.join(tagger.configs.__path__[0], "cpu.py")
  for name in ("cpu:stage1", "cpu.py:stage1", "configs/cpu.py:stage1"):
    monkeypatch.chdir(tmp_path)   # not a checkout: no configs/ here
    assert settings.config_file(name) == f"{shipped}:stage1"
  assert settings.config_file("stage1_mel") == os.path.join(
      tagger.configs.__path__[0], "stage1_mel.py")
  # A file that is there is read as given, even with a shipped name.
  (tmp_path / "cpu.py").write_text("def get_config(arg):\n  return arg\n")
  assert settings.config_file("cpu.py:stage1") == "cpu.py:stage1"
  assert settings.load_config("cpu.py:x") == "x"
  # Other folders, unknown names and private modules stay as given.
  for spec in ("other/cpu.py:stage1", "nothing:stage1", "__init__"):
    assert settings.config_file(spec) == spec
  with pytest.raises(settings.SettingsError, match="nothing: no such"):
    settings.load_config("nothing:stage1")
