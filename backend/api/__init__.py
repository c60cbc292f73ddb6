"""The GraphQL API: types, resolvers, schema, permissions and request context."""
