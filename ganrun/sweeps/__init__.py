"""Sweeps: every run's verdict (record), sweep jobs (job), device placement, reports and the Hydra callback.

    record.py      result.json: Tracker (carried in checkpoints), read_result, override parsing
    job.py         run_job: skip finished jobs of a rerun, place the job, train, record the verdict
    placement.py   job j → GPU (j // jobs_per_gpu) mod k; torch threads = cores // n_jobs
    report.py      collect runs from the files, group by protocol and seed, rank
    render.py      rich table, report.md, report.csv, report.png (contact sheet)
    callbacks.py   SweepReport: the report after every job and at the end of a multirun
"""
