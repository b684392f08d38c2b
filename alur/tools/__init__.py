"""Engineers' tools behind the CLI: order trace, dead-letter handling."""
