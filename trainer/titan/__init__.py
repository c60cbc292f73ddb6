"""Chakor's model on torchtitan: model spec, dataloaders, trainer extensions, config registry.

`--module trainer.titan --config pretrain|sft` makes torchtitan's ConfigManager load
`trainer.titan.config_registry`; `python -m trainer.titan.run` is the torchrun entry point.
"""
