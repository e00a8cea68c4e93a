"""The service layer that the CLI and the HTTP API both call, the app, auth and the CLI."""
