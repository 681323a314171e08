"""The study's networks: one file per paper, plus the plain CNN baseline."""
