"""Reports: tables and figures of every run under an experiments folder (`python -m analysis`).

It sits above common/ and the search spaces: what a run's result.json does not say, it asks
the run's space through `common.space.ReportHooks` (analysis.spaces).

- runs: finding and reading run folders (Run, discover, read_run, read_history).
- tables: grouping runs, mean ± std, the NAS-Bench-201, DARTS-space and evaluation tables,
  Markdown and CSV.
- figures: trajectories, supernet accuracy, alpha heat-maps, cell diagrams, evaluation curves.
- report: the report folder (build_report); __main__: the command line.
"""
