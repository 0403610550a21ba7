"""The evaluation report's section of training clips whose label looks
wrong: when the scored model dir trained every fold (--config.fold=all),
its LABEL_ISSUES file's clips, worst first, each with its player and
log-mel, the given and the suggested label, the label quality, whether it
was manually verified, and its nearest training clips of the given label
and of the suggested one (by the models' embeddings), so that a person
hears which label is right."""

from typing import Callable, List, Optional, Sequence

import numpy as np

from tagger import fileio
from tagger import settings
from tagger.infer import report
from tagger.infer import report_html
from tagger.input import label_fixes

_e = report_html.e
MAX_ISSUES = 100      # suspected clips shown with players and pictures


def issues_of(model_dirs: str) -> Optional[List[label_fixes.LabelIssue]]:
  """The label issues of the model dir scored (one folder that trained
  every fold), or None."""
  dirs = settings.names(model_dirs)
  if len(dirs) != 1:
    return None
  path = fileio.join(dirs[0], label_fixes.LABEL_ISSUES)
  return label_fixes.read_csv(path) if fileio.exists(path) else None


def section_maker(model_dirs: str, training: Optional[report.TrainingClips]
                  ) -> Optional[Callable]:
  """extra(writer) for report.write_report, or None (no label issues)."""
  issues = issues_of(model_dirs)
  if issues is None:
    return None
  return lambda writer: [section(writer, issues, training)]


def section(writer: report.ReportWriter,
            issues: Sequence[label_fixes.LabelIssue],
            training: Optional[report.TrainingClips],
            max_clips: int = MAX_ISSUES) -> str:
  """The section's HTML (clips' pictures written into the report)."""
  shown = list(issues)[:max_clips]
  audio_dir = training.audio_dir if training is not None else ""
  rows = []
  for k, x in enumerate(shown, start=1):
    player, picture = writer.media(k, x.fname, audio_dir, "issue")
    rows.append(
        f"<tr class='issue'><td class='fname'>{_e(x.fname)}</td>"
        f"<td>{_e(', '.join(x.given))}</td>"
        f"<td>{_e(', '.join(x.suggested))}</td>"
        f"<td>{x.label_quality:.3f}</td>"
        f"<td>{'yes' if x.manually_verified else 'no'}</td>"
        f"<td>{player}</td><td>{picture}</td>"
        f"<td>{_neighbours(writer, x, x.given, training)}</td>"
        f"<td>{_neighbours(writer, x, x.suggested, training)}</td></tr>")
  capped = (f"<p class='note'>The first {len(shown)} of {len(issues)}; "
            f"{label_fixes.LABEL_ISSUES} lists them all.</p>"
            if len(issues) > len(shown) else "")
  return ("<section id='label-issues'><h2>Training clips whose label looks "
          f"wrong</h2><p>{len(issues)} clip(s), found from the out-of-fold "
          "scores (each clip judged by the fold model that never trained on "
          "it), the lowest label quality first. Train again with "
          "--config.label_issues=&lt;this model dir&gt;/"
          f"{label_fixes.LABEL_ISSUES} to drop, weight or relabel them.</p>"
          f"{capped}<table id='issues-table'><thead><tr><th>clip</th>"
          "<th>given</th><th>suggested</th><th>label quality</th>"
          "<th>verified</th><th>audio</th><th>log-mel</th><th>nearest of "
          "the given label</th><th>nearest of the suggested label</th></tr>"
          f"</thead><tbody>{''.join(rows)}</tbody></table></section>")


def _neighbours(writer: report.ReportWriter, issue: label_fixes.LabelIssue,
                labels: Sequence[str],
                training: Optional[report.TrainingClips]) -> str:
  """The training clips of these labels nearest the clip (itself left
  out), as an HTML list; '' where the clip's embedding is not at hand."""
  if training is None:
    return ""
  names = list(training.fnames)
  if issue.fname not in names:
    return ""
  me = names.index(issue.fname)
  wanted = set(labels)
  pool = np.array([i for i, l in enumerate(training.labels)
                   if i != me and wanted & set(settings.names(l))], np.int64)
  if not len(pool):
    return ""
  found, similarity = report.nearest(training.embeddings[[me]],
                                     training.embeddings[pool])
  items = []
  for j, s in zip(found[0], similarity[0]):
    i = int(pool[j])
    name = training.fnames[i]
    items.append(f"<li><span class='fname'>{_e(name)}</span>: "
                 f"{_e(training.labels[i])} (similarity {s:.2f})"
                 f"{writer.player(training.audio_dir, name)}</li>")
  return f"<ol class='neighbours'>{''.join(items)}</ol>"
