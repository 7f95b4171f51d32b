"""How a job computes: backend, precision and XLA decided from config and device, GPU slots, and the code and software that ran."""
