"""Chakor's web app: chat, history, search and an admin dashboard over the GraphQL API."""
