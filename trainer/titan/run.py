"""torchrun entry point: `torchrun ... -m trainer.titan.run --module trainer.titan --config pretrain`.

Installs the CPU shims (a no-op with CUDA), then hands over to torchtitan's own `main()`.
"""

from trainer.titan import shims

shims.apply()

from torchtitan.train import main  # noqa: E402

if __name__ == "__main__":
    main()
