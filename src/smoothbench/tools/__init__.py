"""The console tools, one module each, and the measuring behind smoothbench-tune and smoothbench-equivalence."""
