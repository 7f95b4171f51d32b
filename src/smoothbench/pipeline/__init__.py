"""What the Snakemake rules call beyond one stage: job set-up and logs, the plan on one screen, who owns a runs folder, the SLURM fix."""
