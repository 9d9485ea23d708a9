"""The benchmark suite: `python -m benchmarks` (or `make bench`) runs every piece, one process
after another, prints one table and writes benchmarks/results/*.json.

Pieces, one concern per module: bench_synth (synthetic data rate), bench_inpaint (inpainting
training step), bench_classify (classification training steps and embedding throughput),
bench_localfeatures (the matching methods' per-query cost), bench_stages (stage wall times of
the recorded runs); measure holds what they share (timing, memory, FLOP counting, the matmul
peak, machine info) and run_all the entry point. Run them from the project root with
`python -m benchmarks.<piece>`.
"""
