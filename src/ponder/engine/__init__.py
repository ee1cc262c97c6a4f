"""Token generation on top of the model runtime."""
