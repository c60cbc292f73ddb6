"""`chakor eval`: how good an exported model is and which of its GGUFs are faithful enough to serve.

Modules, each with one job: `gates` (the KL-divergence gate table), `kld` (llama-perplexity's
KL-divergence mode), `bpb` (validation loss and bits per byte in PyTorch), `qa` (held-out questions
scored by token-F1), `ask` (questions and sample generations, asked as the backend asks), `speed`
(llama-bench), `plots`, `report` (the typed report, eval.json / eval.md, and reading them back), `run`
(the whole evaluation) and `cli`.
"""
