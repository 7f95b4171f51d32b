"""The datasets: the registry, a study's own datasets and image folders, download, prepare, the prepared arrays on disk, and the batches training reads."""
