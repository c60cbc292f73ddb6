"""The GPU check (validate.sh) and its Python helpers."""
