"""Chakor's model on torchtitan: model spec, dataloaders, trainer extensions, config registry.

`--module trainer.titan --config pretrain|sft` makes torchtitan's ConfigManager load
`trainer.titan.config_registry`; `python -m trainer.titan.run` is the torchrun entry point.
Importing this package first installs the CPU shims (a no-op with CUDA), so that torchtitan is
always imported shimmed.
"""

from trainer.titan import shims

shims.apply()
