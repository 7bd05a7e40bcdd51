"""Small helpers every layer may use: atomic file writes and the device fall-back."""
