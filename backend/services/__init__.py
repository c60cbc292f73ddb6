"""Business logic, independent of GraphQL."""
