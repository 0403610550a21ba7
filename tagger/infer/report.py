"""An evaluation a person can open: one self-contained HTML page per
scoring with labels (`tools/score --labels_csv=... --report_dir=...`).

The page (index.html, with the clips' audio and pictures beside it in the
same folder; no server, no script or font from elsewhere) holds:
  - the headline figures and where they came from (models, TTA, data);
  - per class: clips, precision and recall of the top label, average
    precision, as a table sorted by clicking a column header;
  - the confusion matrix and the most confused pairs;
  - the clips it got most wrong (the lowest probability of the true
    label first; capped, and said so on the page): each with an audio
    player (the audio file itself, by a relative path), its log-mel, the
    true label, the top 3 predictions with probabilities, whether its row
    was manually verified, and its nearest training clips by embedding
    (cosine similarity of the models' pooled features: their labels,
    whether verified, and players), so that a person hears whether the
    label or the model is wrong; filters by class and by verified;
  - the clips that could not be decoded, listed, not dropped.
Every name and label is untrusted text: each is HTML-escaped where it is
written (and percent-encoded in the players' paths); the pictures on
disk are `clips/clip-00001.png`, never named after the clip.
"""

import os
import urllib.parse
from typing import Dict, Optional, Sequence, Tuple

import dataclasses

import numpy as np

import tensorflow as tf
from absl import logging

from tagger import fileio
from tagger import metrics
from tagger import plots
from tagger.infer import evaluation
from tagger.infer import report_html
from tagger.infer import scorer
from tagger.model import model_dir as model_dir_lib
from tagger.shards import data_info
from tagger.shards import records

_e = report_html.e
_figure = report_html.figure

PAGE = "index.html"
MAX_CLIPS = 100      # worst clips shown with players and pictures
CLIPS_DIR = "clips"
NEIGHBOURS = 3       # nearest training clips shown for each
MAX_LISTED = 1000    # clips without audio listed by name


@dataclasses.dataclass
class TrainingClips:
  """The training clips the worst clips are compared with: their
  embeddings by the same models (training_clips)."""
  fnames: Sequence[str]
  labels: Sequence[str]            # as the records name them ("a,b": both)
  verified: np.ndarray             # [N] bool
  embeddings: np.ndarray           # [N, D]
  audio_dir: str = ""              # where their files are, if at hand


def nearest(queries: np.ndarray, keys: np.ndarray, count: int = NEIGHBOURS):
  """(indices [Q, count], cosine similarities [Q, count]) of the keys
  [N, D] nearest each query [Q, D], nearest first."""
  def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  similarity = unit(queries) @ unit(keys).T                     # [Q, N]
  count = min(count, keys.shape[0])
  order = np.argsort(-similarity, axis=1, kind="stable")[:, :count]
  return order, np.take_along_axis(similarity, order, axis=1)


def read_verified(labels_csv: str) -> Dict[str, bool]:
  """fname -> manually_verified, where the labels CSV has the column."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  rows = csv.DictReader(io.StringIO(fileio.read_text(labels_csv)))
  if "manually_verified" not in (rows.fieldnames or ()):
    return {}
  return {r["fname"]: str(r["manually_verified"]).strip() in ("1", "True",
                                                              "true")
          for r in rows}


class ReportWriter:
  """Writes report_dir/index.html and its clips and pictures."""

  def __init__(self, report_dir: str, audio_dir: str = "",
               max_clips: int = MAX_CLIPS,
               training: Optional[TrainingClips] = None):
    self.dir, self.audio_dir, self.max_clips = report_dir, audio_dir, max_clips
    self.training = training
    os.makedirs(os.path.join(report_dir, CLIPS_DIR), exist_ok=True)

  def write(self, scores, truth: Dict[str, Tuple[str, ...]],
            headline: dict, verified: Optional[Dict[str, bool]] = None,
            extra: Sequence[str] = ()) -> str:
    """scores: scorer.Scores (with embeddings, for the nearest training
    clips); truth: fname -> labels (single-label: one); headline: figures
    and settings shown first; extra: more sections (HTML), last. Returns
    the page's path."""
    index = {n: i for i, n in enumerate(scores.fnames)}
    known = [n for n in truth if n in index and truth[n]]
    labels = list(scores.labels)
    position = {l: i for i, l in enumerate(labels)}
    rows = [index[n] for n in known]
    probs = np.exp(scores.log_probs[rows])
    if not scores.multi_label:
      probs /= probs.sum(axis=1, keepdims=True)
    truth_index = np.array([position.get(truth[n][0], -1) for n in known])
    usable = truth_index >= 0
    if scores.multi_label:   # by label: each clip's every label counts
      hot = np.zeros(probs.shape, np.float32)
      for i, n in enumerate(known):
        hot[i, [position[l] for l in truth[n] if l in position]] = 1.0
      classes = self._labels_table(probs, labels, hot)
    else:
      classes = self._classes(probs[usable], labels, truth_index[usable])
    sections = [self._headline(headline), classes,
                self._worst(known, probs, truth, labels, position,
                            verified or {}, scores),
                self._undecoded(scores), *extra]
    page = report_html.PAGE.format(
        title=_e(headline.get("title", "tagger evaluation")),
        body="\n".join(sections), script=report_html.SCRIPT)
    path = os.path.join(self.dir, PAGE)
    fileio.atomic_write_text(path, page)
    return path

  def _headline(self, headline: dict) -> str:
    items = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                    for k, v in headline.items() if k != "title")
    return f"<section id='headline'><h2>Headline</h2><table>{items}" \
           "</table></section>"

  def _classes(self, probs, labels, truth) -> str:
    if not len(truth):
      return "<section id='classes'><p>No clip has a known label.</p></section>"
    body = "".join(
        f"<tr data-class='{_e(l)}'><td>{_e(l)}</td><td>{n}</td>"
        f"<td>{_figure(p)}</td><td>{_figure(r)}</td><td>{_figure(a)}</td>"
        "</tr>" for l, n, p, r, a in report_html.per_class_table(
            probs, labels, truth))
    png = plots.confusion_matrix(metrics.confusion(
        np.log(np.maximum(probs, 1e-12)), truth, len(labels)), labels,
        "confusion of the top label")
    fileio.atomic_write_bytes(os.path.join(self.dir, "confusion.png"), png)
    pairs = "".join(f"<li>{_e(t)} &rarr; {_e(p)}: {n}</li>"
                    for t, p, n in report_html.confused_pairs(probs, truth,
                                                              labels))
    return (
        "<section id='classes'><h2>Per class</h2>"
        "<table id='class-table' class='sortable'><thead><tr>"
        "<th>class</th><th>clips</th><th>precision</th><th>recall</th>"
        f"<th>AP</th></tr></thead><tbody>{body}</tbody></table>"
        "<h2>Confusion</h2><img src='confusion.png' alt='confusion matrix'>"
        f"<h3>Most confused</h3><ol id='confused'>{pairs}</ol></section>")

  def _labels_table(self, probs, labels, hot) -> str:
    """Multi-label data: clips and average precision of each label."""
    ap = metrics.average_precision_per_class(hot, probs)
    body = "".join(
        f"<tr data-class='{_e(l)}'><td>{_e(l)}</td><td>{int(n)}</td>"
        f"<td>{'' if np.isnan(a) else f'{a:.3f}'}</td></tr>"
        for l, n, a in zip(labels, hot.sum(axis=0), ap))
    return ("<section id='classes'><h2>Per label</h2>"
            "<table id='class-table' class='sortable'><thead><tr>"
            "<th>label</th><th>clips</th><th>AP</th></tr></thead>"
            f"<tbody>{body}</tbody></table></section>")

  def _worst(self, known, probs, truth, labels, position, verified,
             scores) -> str:
    true_prob = np.array([
        np.mean([probs[i, position[l]] for l in truth[n] if l in position])
        if any(l in position for l in truth[n]) else 0.0
        for i, n in enumerate(known)])
    order = np.argsort(true_prob, kind="stable")[:self.max_clips]
    empty = dict(zip(scores.fnames, scores.empty))
    neighbours = self._neighbours([known[i] for i in order], scores)
    cards = [self._card(k + 1, known[i], probs[i], truth[known[i]], labels,
                        verified.get(known[i]), bool(empty[known[i]]),
                        neighbours[k])
             for k, i in enumerate(order)]
    capped = (f"<p class='note'>The {len(order)} clips with the lowest "
              f"probability of their true label, of {len(known)}.</p>")
    options = "".join(f"<option>{_e(l)}</option>" for l in labels)
    return ("<section id='worst'><h2>Clips it got most wrong</h2>"
            f"{capped}<p>class <select id='class-filter'><option value=''>"
            f"all</option>{options}</select> verified <select "
            "id='verified-filter'><option value=''>all</option><option>yes"
            "</option><option>no</option></select></p>"
            f"<table id='worst-table'><tbody>{''.join(cards)}</tbody></table>"
            "</section>")

  def _neighbours(self, fnames: Sequence[str], scores) -> list:
    """[len(fnames)] HTML lists of each clip's nearest training clips ('' :
    none to show: no training clips at hand, or a clip without audio)."""
    training = self.training
    if training is None or scores.embeddings is None or not fnames:
      return [""] * len(fnames)
    index = {n: i for i, n in enumerate(scores.fnames)}
    rows = [index[n] for n in fnames]
    found, similarity = nearest(scores.embeddings[rows],
                                training.embeddings)
    out = []
    for k, row in enumerate(rows):
      if scores.empty[row]:
        out.append("")
        continue
      items = []
      for j, s in zip(found[k], similarity[k]):
        name = training.fnames[j]
        verified = "yes" if training.verified[j] else "no"
        player = self.player(training.audio_dir, name)
        items.append(f"<li><span class='fname'>{_e(name)}</span>: "
                     f"{_e(training.labels[j])} (verified {verified}, "
                     f"similarity {s:.2f}){player}</li>")
      out.append(f"<ol class='neighbours'>{''.join(items)}</ol>")
    return out

  def player(self, audio_dir: str, fname: str,
              preload: str = "none") -> str:
    """An audio element for audio_dir/fname by a relative path ('' : no
    such file)."""
    source = os.path.join(audio_dir, fname) if audio_dir else ""
    if not source or not os.path.isfile(source):
      return ""
    relative = os.path.relpath(os.path.abspath(source),
                               os.path.abspath(self.dir))
    src = urllib.parse.quote(relative.replace(os.sep, "/"), safe="/")
    kind = "clip-audio" if preload == "metadata" else "neighbour-audio"
    return (f"<audio class='{kind}' controls preload='{preload}' "
            f"src='{_e(src)}'></audio>")

  def _card(self, k: int, fname: str, probs, labels_true, labels,
            is_verified, empty: bool, neighbours: str = "") -> str:
    top = np.argsort(-probs)[:3]
    predictions = "".join(f"<li>{_e(labels[c])} {probs[c]:.3f}</li>"
                          for c in top)
    audio, picture = (("<span class='note'>no audio (not decoded)</span>",
                       "") if empty else self.media(k, fname))
    verified = "" if is_verified is None else ("yes" if is_verified else "no")
    return (f"<tr class='clip' data-class='{_e(' '.join(labels_true))}' "
            f"data-verified='{verified}'><td class='fname'>{_e(fname)}</td>"
            f"<td>{_e(', '.join(labels_true))}</td><td><ol>{predictions}"
            f"</ol></td><td>{audio}</td><td>{picture}</td>"
            f"<td>{_e(verified)}</td><td>{neighbours}</td></tr>")

  def media(self, k: int, fname: str, audio_dir: Optional[str] = None,
            kind: str = "clip") -> Tuple[str, str]:
    """The clip's player (the audio file itself, by a percent-encoded
    relative path: the page stays small) and its log-mel picture
    (clips/{kind}-{k}.png), where the file (in audio_dir: the scored
    clips' by default) can be read."""
    audio_dir = self.audio_dir if audio_dir is None else audio_dir
    player = self.player(audio_dir, fname, "metadata")
    if not player:
      return "<span class='note'>no audio file</span>", ""
    source = os.path.join(audio_dir, fname)
    picture = ""
    png = _log_mel_png(source)
    if png is not None:
      name = f"{CLIPS_DIR}/{kind}-{k:05d}.png"
      fileio.atomic_write_bytes(os.path.join(self.dir, name), png)
      picture = f"<img class='logmel' src='{name}' alt='log-mel'>"
    return player + "<span class='duration'></span>", picture

  def _undecoded(self, scores) -> str:
    empty = [n for n, e in zip(scores.fnames, scores.empty) if e]
    items = "".join(f"<li>{_e(n)}</li>" for n in empty[:MAX_LISTED])
    more = (f"<p class='note'>The first {MAX_LISTED} are listed; the "
            "submission and --probs_out have them all.</p>"
            if len(empty) > MAX_LISTED else "")
    return ("<section id='undecoded'><h2>Clips without audio</h2>"
            f"<p>{len(empty)} clip(s) could not be decoded or held no sound;"
            f" they were ranked by the class frequencies.</p>{more}"
            f"<ul>{items}</ul></section>")


def screenshot(page: str, png: str, width: int = 1280,
               height: int = 1600) -> None:
  """A PNG of the page as headless Chromium draws it (Debian's chromium;
  README's picture of the demo's report is made so)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  if not shutil.which("chromium"):
    raise FileNotFoundError("chromium is not installed (apt-get install "
                            "chromium)")
  subprocess.run(
      ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
       "--hide-scrollbars", "--allow-file-access-from-files",
       f"--window-size={width},{height}", "--virtual-time-budget=3000",
       f"--screenshot={os.path.abspath(png)}",
       "file://" + os.path.abspath(page)],
      check=True, capture_output=True, timeout=120)


def _log_mel_png(path: str) -> Optional[bytes]:
  """The clip's log-mel (the reference's features) as a small PNG."""
  from tagger.audio import decode  # pylint: disable=g-import-not-at-top
  from tagger.audio import features  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  params = FeatureParams()
  try:
    with open(path, "rb") as f:
      waveform, _, _ = decode.decode_audio(f.read(), path, params)
  except (decode.AudioError, OSError):
    return None
  log_mel = features.waveform_to_log_mel(waveform, params)
  return plots.log_mel_png(log_mel)


# ---------------------------------------------------------------------------
# From a ScoreJob to the page: the training clips beside the worst, and
# the headline of where the figures came from.


def training_clips(models: Sequence["scorer.LoadedModel"],
                   strategy: tf.distribute.Strategy, views: "scorer.Views"):
  """report.TrainingClips: the models' training shards (the first model
  dir's data.json names them) embedded by the same models, one try at
  each length; None where the shards are not at hand (a model dir moved
  to another machine)."""
  data_dir = models[0].data.data_dir
  try:
    info = data_info.load_data_info(data_dir)
  except (data_info.InputError, tf.errors.OpError) as e:
    logging.info("report: no nearest training clips (%s)", e)
    return None
  serialized = tf.data.TFRecordDataset(info.all_files(), info.compression)
  scores = scorer.Scorer(models, strategy, embeddings=True).score(
      serialized, dataclasses.replace(views, tries=1), progress=False)
  headers = records.read_headers(serialized)
  labels = list(headers[records.LABEL_NAME])
  verified = headers[records.MANUALLY_VERIFIED].astype(bool)
  keep = ~scores.empty
  audio_dir = info.manifest.audio_dir
  return TrainingClips(
      [n for n, k in zip(scores.fnames, keep) if k],
      [l for l, k in zip(labels, keep) if k], np.array(verified)[keep],
      scores.embeddings[keep],
      audio_dir if fileio.exists(audio_dir or "/nonexistent") else "")


def _version_and_commit() -> str:
  """tagger's version, and the commit of its checkout where it runs from
  one (else: the version alone)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import tagger  # pylint: disable=g-import-not-at-top
  try:
    commit = subprocess.run(
        ["git", "-C", os.path.dirname(os.path.abspath(tagger.__file__)),
         "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit = ""
  return tagger.__version__ + (f" (commit {commit})" if commit else "")


def write_report(job, scores: "scorer.Scores", result: dict,
                 training=None, extra=None) -> str:
  """The evaluation of a score.ScoreJob as an HTML page; its path. training:
  report.TrainingClips, for each worst clip's nearest training clips;
  extra(writer) -> more sections (HTML), e.g. report_issues.section."""
  figures = result["evaluation"]
  figure = ({"lwlrap": f"{figures['lwlrap']:.4f}"} if scores.multi_label
            else {"MAP@3": f"{figures['map3']:.4f}"})
  headline = {"title": "tagger evaluation: " + os.path.basename(
      job.labels_csv), **figure,
              "top-1 accuracy": (f"{figures['accuracy']:.4f}"
                                 if "accuracy" in figures else ""),
              "clips": result["clips"], "without audio": result["empty"],
              "models": ", ".join(result["models"]),
              "TTA": f"{job.tta}, lengths {result['lengths']} x "
                     f"{job.tries} tries",
              "data": job.data_dir or job.audio_dir,
              "labels": job.labels_csv,
              "configs": ", ".join(fileio.join(d, model_dir_lib.CONFIG)
                                   for d in result["models"]),
              "tagger": _version_and_commit()}
  audio_dir = job.audio_dir
  if job.data_dir:   # the shards' own audio folder, where it is at hand
    audio_dir = data_info.load_data_info(job.data_dirs[0]).manifest.audio_dir
  writer = ReportWriter(job.report_dir, audio_dir, training=training)
  path = writer.write(
      scores, evaluation.read_labels_csv(job.labels_csv), headline,
      read_verified(job.labels_csv), extra(writer) if extra else ())
  logging.info("report: %s", path)
  return path
