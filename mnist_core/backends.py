"""Which job service a process uses: worker processes on this machine (`job_service.LocalJobs`),
or a Ray cluster (`ray_jobs.RayJobs`) when `MNIST_RAY_ADDRESS` names one.

Apart from both backends, so neither imports the other: Ray is imported only when a cluster is
configured.
"""

from __future__ import annotations

import os

from mnist_core.job_service import JobService, LocalJobs, ray_address


def job_service(runs_dir: str | os.PathLike[str], ray: str | None = None) -> JobService:
    """The job service for the run store `runs_dir`: on the Ray cluster at `ray` (default
    `MNIST_RAY_ADDRESS`) when there is one, else `LocalJobs`. Ray is imported only then.

    Raises JobError when the cluster cannot be reached.
    """
    address = ray or ray_address()
    if address is None:
        return LocalJobs(runs_dir)
    from mnist_core.ray_jobs import RayJobs

    return RayJobs(runs_dir, address)
