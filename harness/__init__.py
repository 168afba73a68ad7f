"""The dev kit: scenario runner, emulator backends, Lambda-like driver, convergence checks."""
