"""torchrun entry point: `torchrun ... -m trainer.titan.run --module trainer.titan --config pretrain`.

Importing `trainer.titan` installs the shims; then torchtitan's own `main()` runs the training.
"""
# ruff: noqa: I001  (the shims must be installed before torchtitan is imported)

import trainer.titan  # noqa: F401
from torchtitan.train import main

if __name__ == "__main__":
    main()
