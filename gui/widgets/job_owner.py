"""A widget that owns at most one running job, written once.

Submitting replaces the widget's running job (the router cancels it and drops its results),
its Run buttons are disabled and its Cancel buttons enabled until the job is done, whatever
way it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gui.router import JobRouter


class JobOwner:
    """Mixin for QWidgets with a ``router``: :meth:`submit_job`, :meth:`cancel_job`, :meth:`busy`.

    The buttons that follow the job come from :meth:`job_buttons` (or :meth:`own_jobs`).
    """

    _job: int | None = None
    _run_buttons: tuple = ()
    _cancel_buttons: tuple = ()

    def own_jobs(self, router: JobRouter, run: Iterable = (), cancel: Iterable = ()) -> None:
        self.router = router
        self._run_buttons = tuple(run)
        self._cancel_buttons = tuple(cancel)
        for b in self._cancel_buttons:
            b.setEnabled(False)

    def job_buttons(self) -> tuple[tuple, tuple]:
        """(buttons disabled while a job runs, buttons enabled while it runs)."""
        return self._run_buttons, self._cancel_buttons

    def submit_job(self, job, on_done: Callable[[], None] | None = None, **handlers) -> int:
        """Run ``job`` in place of this widget's current one; ``handlers`` as for JobRouter.submit."""
        self._show_running(True)

        def done() -> None:
            self._job = None
            self._show_running(False)
            if on_done is not None:
                on_done()

        self._job = self.router.submit(job, replace=self._job, on_done=done, **handlers)
        return self._job

    def cancel_job(self) -> None:
        if self._job is not None:
            self.router.cancel(self._job)

    def busy(self) -> bool:
        return self._job is not None

    def _show_running(self, running: bool) -> None:
        run, cancel = self.job_buttons()
        for b in run:
            b.setEnabled(not running)
        for b in cancel:
            b.setEnabled(running)
