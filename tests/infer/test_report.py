"""The evaluation report: a page that opens from the disk, whose untrusted
names stay text, checked with html.parser and, where Debian's chromium is
installed, in headless Chromium."""

import html
import html.parser
import os
import re
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest

from conftest import tone, wav_bytes  # pylint: disable=g-bad-import-order
from tagger.infer import report
from tagger.infer import scorer

NAMES = ("<img src=x onerror=alert(1)>.wav", 'quote " and & amp.wav',
         "ünïcödé.wav", "plain.wav", "broken.wav")
TRAIN = ("<script>alert(2)</script>.wav", "train_bell.wav", "train_drum.wav")


class _Page(html.parser.HTMLParser):
  """Tags and attributes of a page, and its text."""

  def __init__(self):
    super().__init__()
    self.tags, self.text = [], []

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))

  def handle_data(self, data):
    self.text.append(data)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
  root = tmp_path_factory.mktemp("report")
  audio = root / "audio"
  audio.mkdir()
  for i, name in enumerate(NAMES[:-1]):
    (audio / name).write_bytes(wav_bytes(tone(0.5 + 0.25 * i, 440, seed=i)))
  (audio / NAMES[-1]).write_bytes(b"not audio")
  labels = ["bell", "drum", "flute"]
  probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.25, 0.25],
                    [0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]])
  # Embeddings: test clip i lies nearest training clip i % 3.
  basis = np.eye(4, dtype=np.float32)
  embeddings = np.stack([basis[i % 3] + 0.1 * basis[3] for i in range(5)])
  embeddings[4] = 0.0   # no audio: no embedding
  scores = scorer.Scores(list(NAMES), np.log(probs), embeddings,
                        np.array([False] * 4 + [True]), labels)
  train_audio = root / "train_audio"
  train_audio.mkdir()
  (train_audio / TRAIN[1]).write_bytes(wav_bytes(tone(0.6, 880)))
  training = report.TrainingClips(
      TRAIN, ["bell", "bell", "drum"], np.array([True, False, True]),
      basis[:3], str(train_audio))
  truth = dict(zip(NAMES, [("bell",), ("bell",), ("drum",), ("drum",),
                           ("bell",)]))
  path = report.ReportWriter(str(root / "report"), str(audio),
                             max_clips=4, training=training).write(
      scores, truth, {"title": "test <b>report</b>", "MAP@3": "0.5"},
      {NAMES[0]: True, NAMES[1]: False})
  return path


def test_the_page_holds_the_tables_and_escapes_every_name(page):
  parsed = _Page()
  parsed.feed(open(page, encoding="utf-8").read())
  text = "".join(parsed.text)
  # No tag came from a name: the only images are the pictures it wrote.
  assert all(a.get("src") != "x" for t, a in parsed.tags if t == "img")
  assert not any("onerror" in a for _, a in parsed.tags)
  assert NAMES[0] in text and NAMES[1] in text and NAMES[2] in text
  assert "test <b>report</b>" in text
  rows = [a for t, a in parsed.tags if t == "tr" and "data-class" in a]
  classes = [a["data-class"] for a in rows if a.get("class") != "clip"]
  assert classes == ["bell", "drum", "flute"]
  clips = [a for a in rows if a.get("class") == "clip"]
  assert len(clips) == 4   # capped at max_clips, and said so
  assert "The 4 clips with the lowest probability" in text
  assert "of 5." in text
  assert [a["data-verified"] for a in clips][:2] == ["yes", "no"]
  players = [a["src"] for t, a in parsed.tags
             if t == "audio" and a.get("class") == "clip-audio"]
  folder = os.path.dirname(page)
  files = [os.path.normpath(os.path.join(folder, urllib.parse.unquote(p)))
           for p in players]
  assert len(files) == 4 and all(os.path.isfile(f) for f in files), files
  assert os.path.basename(files[0]) == NAMES[0]   # the file itself
  assert "broken.wav" in text   # listed among the clips without audio
  # Each worst clip's nearest training clips, nearest first, as text.
  assert TRAIN[0] in text and not any(t == "script" and not a
                                      for t, a in parsed.tags[:-1])
  cards = open(page, encoding="utf-8").read().split("<tr class='clip'")[1:]
  assert len(cards) == 4
  for card in cards:   # test clip i lies nearest training clip i % 3
    fname = html.unescape(re.search(r"<td class='fname'>(.*?)</td>",
                                    card).group(1))
    first = re.search(r"<ol class='neighbours'><li><span class='fname'>"
                      r"(.*?)</span>: (\w+) \(verified (\w+)", card)
    k = NAMES.index(fname) % 3
    assert html.unescape(first.group(1)) == TRAIN[k], card
    assert first.group(2) == ["bell", "bell", "drum"][k]
    assert first.group(3) == ["yes", "no", "yes"][k]
  found, similarity = report.nearest(np.eye(3)[[2, 0]], np.eye(3)[[0, 1, 2]])
  assert found.tolist() == [[2, 0, 1], [0, 1, 2]]
  assert similarity[:, 0].tolist() == [1.0, 1.0]
  neighbour_players = [a["src"] for t, a in parsed.tags
                       if t == "audio" and a.get("class") == "neighbour-audio"]
  assert neighbour_players and all(p.endswith("train_bell.wav")
                                   for p in neighbour_players)


@pytest.mark.skipif(not shutil.which("chromium"),
                    reason="Debian's chromium is not installed (apt-get "
                    "install chromium); the page is checked with "
                    "html.parser only")
def test_the_page_loads_in_headless_chromium(page):
  """No console error, the players know their clips' durations (the page
  writes them when the metadata loads), and no name became markup."""
  done = subprocess.run(
      ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
       "--allow-file-access-from-files", "--autoplay-policy="
       "no-user-gesture-required", "--enable-logging=stderr", "--v=0",
       "--virtual-time-budget=5000", "--dump-dom", "file://" + page],
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  console = [l for l in done.stderr.splitlines() if "CONSOLE" in l]
  assert not [l for l in console if "rror" in l], console
  parsed = _Page()
  parsed.feed(done.stdout)
  audio = [a for t, a in parsed.tags
           if t == "audio" and a.get("class") == "clip-audio"]
  assert audio and all(float(a.get("data-duration", 0)) > 0.4
                       for a in audio), audio
  assert all(a.get("src") != "x" for t, a in parsed.tags if t == "img")
  picture = os.path.join(os.path.dirname(page), "screenshot.png")
  report.screenshot(page, picture, 800, 600)
  assert open(picture, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_ten_thousand_clips_make_a_page_that_stays_small(tmp_path):
  """10,000 clips of 41 classes (1,500 without audio): the worst clips
  and the undecoded list are capped, and the page says so."""
  rng = np.random.default_rng(0)
  n, labels = 10_000, [f"class {c}" for c in range(41)]
  probs = rng.dirichlet(np.ones(41), n)
  names = [f"clip_{i:05d}.wav" for i in range(n)]
  empty = np.arange(n) < 1500
  scores = scorer.Scores(names, np.log(probs), rng.normal(size=(n, 8)),
                        empty, labels)
  truth = {f: (labels[i % 41],) for i, f in enumerate(names)}
  training = report.TrainingClips(
      [f"t{i}.wav" for i in range(5000)], [labels[i % 41] for i in
                                           range(5000)],
      np.ones(5000, bool), rng.normal(size=(5000, 8)))
  path = report.ReportWriter(str(tmp_path), "", training=training).write(
      scores, truth, {"MAP@3": "0.1"})
  page = open(path, encoding="utf-8").read()
  assert len(page) < 2_000_000, len(page)
  assert page.count("<tr class='clip'") == report.MAX_CLIPS
  assert f"The {report.MAX_CLIPS} clips with the lowest probability" in page
  assert f"The first {report.MAX_LISTED} are listed" in page
  assert page.count("class='neighbours'") == report.MAX_CLIPS - sum(
      1 for c in page.split("<tr class='clip'")[1:] if "not decoded" in c)
