"""The shipped training configs, importable as tagger.configs.

setup.py maps this folder into the wheel (package_dir), so an installed
tagger holds them; in a checkout tagger/__init__.py points tagger.configs
here. Configs compose by import (`from tagger.configs import demo`); the
tools take one by path or by name (`--config=cpu:stage1`,
settings.config_file).
"""
