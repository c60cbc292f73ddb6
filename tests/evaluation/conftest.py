"""The converter tests' real export (tokenizer + briefly trained micro model) for the eval tests."""

from tests.converter.conftest import export_dir, micro_cfg, tokenizer_dir

__all__ = ["export_dir", "micro_cfg", "tokenizer_dir"]
