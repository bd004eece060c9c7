"""Reports on a sweep (or on runs): tidy results, the paper's tables, the Pareto plot and a recommendation.

sources.py (what is reported on), rows.py (one row per cell and target, from typed results), aggregate.py
(settings: means over domains and seeds), frontier.py (frontier, honest recommendation), markdown.py (report.md),
plot.py (pareto.png), write.py (the files).
"""

from edgeprune.report.write import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
