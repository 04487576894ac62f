"""The CLI's commands, one module per area; each has a `register(app)`."""
