"""One training job: the loop, its session, network, losses, checkpoint, interruption, progress, outputs, calibration and kept versions."""
