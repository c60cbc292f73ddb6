"""Root Query, Mutation and Subscription types."""
