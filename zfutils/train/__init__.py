"""Training loops (inpainting fine-tuning; classification in later stages) and their plumbing:
resumable checkpoints, JSON-lines logs, loss recipes."""
