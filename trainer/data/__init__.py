"""Chakor's data pipeline: prepare (read, clean, filter, dedup), tokenize into shards, SFT conversations."""
