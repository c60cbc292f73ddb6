"""Cross-cutting pieces: settings access, errors, security, rate limiting, database."""
