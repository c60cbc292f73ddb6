"""Chakor's roof: the `chakor` command, the quickstart, the supervisor and the services it runs (database
sidecar, llama-server, backend, web app), and `chakor bench`."""
