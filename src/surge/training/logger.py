"""Run logs: a CSV file (every logged step, every loss term and weight) and TensorBoard where installed."""

from __future__ import annotations

import csv
from pathlib import Path

from surge.atomic import atomic_output


class RunLog:
    """Append-only CSV whose columns grow as new keys appear (the file is rewritten then)."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        self.rows: list[dict] = []
        if path.exists() and resume_step is not None:
            with path.open(newline="") as f:
                # Drop rows a killed run logged after its last checkpoint: they will be redone.
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.fields: list[str] = list(self.rows[0].keys()) if self.rows else []
        self._rewrite()
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def log(self, row: dict) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new:
            self.fields += new
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.fields).writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "step":
                    try:
                        self.tb.add_scalar(key, float(value), int(row["step"]))
                    except (TypeError, ValueError):
                        pass

    def _rewrite(self) -> None:
        # atomic_output's temp name (".log.csv.<random>.tmp") is one the trainer knows to clean up.
        with atomic_output(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            if self.fields:
                w.writeheader()
                w.writerows(self.rows)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
