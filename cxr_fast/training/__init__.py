"""Training: configuration, data selection, the loop, resumable state and the orchestrator."""
