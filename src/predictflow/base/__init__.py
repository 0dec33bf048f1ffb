"""The floor every layer stands on: error types and their one-line messages, fault injection for
tests, model references (`parse_ref`) and secret redaction. Imports nothing of predictflow."""
