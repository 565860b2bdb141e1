"""Write the notebooks in this folder from the cells below: ``python notebooks/build.py``.

The notebooks are committed without outputs (the tests execute them, so an
output can never be stale); this script is their source of truth.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
%matplotlib inline
import matplotlib.pyplot as plt
import pacer
from pacer.testing.figures import keep  # the docs embed each notebook's key figure"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_timeline.ipynb": [
        ("md", "# Wrap a token iterator and look at its timeline\n\n"
               "A real tokenizer (mistral-common's tekken file, through tiktoken) turns a text into ids; "
               "`pacer.traces.bursty` gives them model-like arrival times; `pacer.simulate` replays them "
               "through a pipeline on a virtual clock, instantly, and returns what came out when."),
        ("code", SETUP),
        ("code", """\
import pathlib
from pacer.tokenizers import load_tekken

enc = load_tekken()
text = (pathlib.Path(pacer.__file__).parent / "data" / "demo.md").read_text()
ids = enc.encode(text)
trace = pacer.traces.bursty(ids, per_second=50, seed=1)
pipe = pacer.Detokenizer(enc) | pacer.Pacer(cps=40)
timeline = pacer.simulate(trace, pipe)
assert timeline.text == enc.decode(ids)  # lossless
print(len(ids), "tokens;", len(timeline.emissions), "chunks out;",
      f"lag p50 {timeline.lag(50):.3f} s, p99 {timeline.lag(99):.3f} s")"""),
        ("md", "The same run as a picture: characters that have arrived against characters shown, "
               "the lag of each chunk, and the output rate per 100 ms window."),
        ("code", """\
import itertools

arrived_t = [t for t, _ in trace]
arrived_n = list(itertools.accumulate(len(enc.decode([i])) for _, i in trace))
shown_t = [c.emitted for c in timeline.emissions]
shown_n = list(itertools.accumulate(len(c.text) for c in timeline.emissions))

fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
axes[0].step(arrived_t, arrived_n, where="post", label="arrived")
axes[0].step(shown_t, shown_n, where="post", label="shown")
axes[0].set_ylabel("characters"); axes[0].legend()
axes[1].plot(shown_t, [c.lag for c in timeline.emissions], ".", markersize=3)
axes[1].axhline(0.5, color="grey", linestyle=":", label="Pacer max_lag")
axes[1].set_ylabel("lag (s)"); axes[1].legend()
bins = timeline.chars_per_window(0.1)
axes[2].bar([shown_t[0] + 0.1 * k for k in range(len(bins))], bins, width=0.09)
axes[2].set_ylabel("chars / 100 ms"); axes[2].set_xlabel("seconds")
fig.tight_layout()
keep(fig, "01-timeline.png")"""),
        ("md", "The lag is measured from when each token reached the pipeline: the pacer finds sentence "
               "and clause ends in the text itself and pauses there without holding text for a sentence "
               "to finish, so no chunk waits longer than `max_lag` (0.5 s)."),
    ],
    "02_pacing_sweep.ipynb": [
        ("md", "# Sweep the pacing parameters and compare with the reference smoothers\n\n"
               "Every smoother replays the same traces. Lower coefficient of variation (CV) of characters "
               "per 100 ms is smoother; lag is how long text waited."),
        ("code", SETUP),
        ("code", """\
import re, statistics
from pacer.testing.references import AdaptiveChars, FixedDelayWords

words = re.findall(r"\\S+\\s*", "Streaming output needs a calm rhythm, not bursts and stalls. " * 60)
traces = {
    "steady": pacer.traces.steady(words, 30),
    "bursty": pacer.traces.bursty(words, per_second=40, seed=2),
    "packets": [(k * 0.05, "".join(words[i:i + 20])) for k, i in enumerate(range(0, len(words), 20))],
}

def cv(timeline):
    bins = timeline.chars_per_window(0.1)[:-1]
    return statistics.pstdev(bins) / statistics.mean(bins)

def worst_lag(timeline):
    return max(c.lag for c in timeline.emissions if c.arrival >= 1.0)

rows = []
for name, trace in traces.items():
    for label, make in [("pacer graphemes", lambda: pacer.Pacer(cps=40)),
                        ("pacer words", lambda: pacer.Pacer(cps=40, unit="word")),
                        ("fixed 10 ms/word", lambda: FixedDelayWords()),
                        ("adaptive chars", lambda: AdaptiveChars())]:
        t = pacer.simulate(trace, make())
        rows.append((name, label, worst_lag(t), cv(t)))
for row in rows:
    print(f"{row[0]:8} {row[1]:17} max lag {row[2]:7.3f} s   CV {row[3]:.3f}")"""),
        ("md", "A sweep of `max_lag`: a larger budget lets the pacer spread bursts wider (smoother), "
               "at the cost of more lag."),
        ("code", """\
budgets = [0.1, 0.25, 0.5, 1.0, 2.0]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
for name, trace in traces.items():
    results = [pacer.simulate(trace, pacer.Pacer(cps=40, max_lag=b)) for b in budgets]
    ax[0].plot(budgets, [cv(r) for r in results], "o-", label=name)
    ax[1].plot(budgets, [worst_lag(r) for r in results], "o-", label=name)
ax[0].set_xlabel("max_lag (s)"); ax[0].set_ylabel("CV of chars / 100 ms"); ax[0].legend()
ax[1].set_xlabel("max_lag (s)"); ax[1].set_ylabel("worst lag (s)")
fig.tight_layout()"""),
        ("md", "## Before and after: pauses at sentence ends inside the lag bound\n\n"
               "The same trace three ways: the pacer with its pauses off (as it ran on plain text before it "
               "found sentence ends itself), the pacer as it is, and a sentence splitter in front of it "
               "(which holds each sentence until it is proven). Gaps after a sentence end are the pauses; "
               "the dotted line is the lag bound, counted from when the text reached the pipeline."),
        ("code", """\
import itertools
from pacer.testing.rhythm import pause_ratio

text = "".join(words[:160])
trace = pacer.traces.steady(words[:160], 25)
runs = {
    "no pauses (before)": pacer.Pacer(cps=40, sentence_pause=0, clause_pause=0),
    "Pacer() (after)": pacer.Pacer(cps=40),
    "SentenceSplitter() | Pacer()": pacer.SentenceSplitter() | pacer.Pacer(cps=40),
}
fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
for label, stage in runs.items():
    t = pacer.simulate(trace, stage)
    assert t.text == text
    shown = list(itertools.accumulate(len(c.text) for c in t.emissions))
    axes[0].step([c.emitted for c in t.emissions], shown, where="post", label=label)
    axes[1].plot([c.emitted for c in t.emissions], [c.lag for c in t.emissions], ".", markersize=3, label=label)
    print(f"{label:30} pause ratio {pause_ratio(t, text):5.2f}   worst lag {max(t.lags()):.3f} s   CV {cv(t):.3f}")
axes[0].set_xlim(2, 4); axes[0].set_ylabel("characters shown"); axes[0].legend()
axes[1].axhline(0.5, color="grey", linestyle=":", label="max_lag")
axes[1].set_ylabel("lag (s)"); axes[1].set_xlabel("seconds"); axes[1].legend()
fig.tight_layout()
keep(fig, "02-pauses.png")"""),
        ("md", "The pause ratio is the mean gap where a sentence ends over the mean gap where another word "
               "ends: about 1 with the pauses off, well above 1.5 with them. With the splitter in front the "
               "text comes a sentence at a time, so the pacer has to catch up after each: lumpier, and "
               "later (the bound still holds from the pipeline's input, except for what the splitter "
               "itself held longer than that)."),
    ],
    "03_sentences.ipynb": [
        ("md", "# Sentences from a live stream\n\n"
               "Fed one character at a time, each sentence comes out as soon as the following text proves "
               "it ended. The latency is how many characters arrived after its last character."),
        ("code", SETUP),
        ("code", """\
text = ("Dr. Patel arrived at 5 p.m. and left early. The U.S. team won! Did they? Yes... it was close. "
        "今天天气很好。我们去公园吧！「おはよう。」と彼は言った。\\n\\n"
        "# Markdown\\n- a list item\\n- another one\\n\\n```python\\nx = 1. y = 2.\\n```\\nDone.")
splitter = pacer.SentenceSplitter()
latencies = []
for fed, ch in enumerate(text, 1):
    for sentence in splitter.feed(ch):
        end = text.index(sentence) + len(sentence.rstrip())
        latencies.append(fed - end)
        print(f"+{fed - end} chars  {sentence!r}")
for sentence in splitter.flush():
    print(f"(flush)   {sentence!r}")"""),
        ("code", """\
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.hist(latencies, bins=range(0, max(latencies) + 2), align="left", rwidth=0.8)
ax.set_xlabel("characters after the sentence's end before it came out"); ax.set_ylabel("sentences")
fig.tight_layout()
keep(fig, "03-sentence-latency.png")"""),
        ("md", "A length budget cuts long sentences at clause marks, and says so:"),
        ("code", """\
long = "When the model rambles on, and on, without ever stopping, a voice still needs something to say"
splitter = pacer.SentenceSplitter(max_chars=40, first_max_chars=20)
chunks = splitter.push(pacer.Chunk(long, 0.0), 0.0) + splitter.finish(0.0)
for c in chunks:
    print(f"{c.boundary.name:9} {c.text!r}")"""),
    ],
    "04_generate.ipynb": [
        ("md", "# `model.generate` through the pacer streamer\n\n"
               "A tiny, randomly initialised Llama (no download) with a real SentencePiece tokenizer shipped "
               "by mistral-common. `PacerStreamer` takes the place of `TextIteratorStreamer`: the text is "
               "byte-exact, and it goes through any pipeline on the way."),
        ("code", SETUP),
        ("code", """\
import os, shutil, tempfile, threading, sys, time
import torch, transformers
from pacer.tokenizers import mistral_data_file

folder = tempfile.mkdtemp()
shutil.copy(mistral_data_file("tokenizer.model.v1"), os.path.join(folder, "tokenizer.model"))
tok = transformers.LlamaTokenizer.from_pretrained(folder)
torch.manual_seed(0)
config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
model = transformers.LlamaForCausalLM(config).eval()"""),
        ("code", """\
streamer = pacer.PacerStreamer(tok, pacer.Pacer(cps=400, unit="grapheme"), skip_prompt=True,
                               skip_special_tokens=True)
inputs = tok("Once upon a time", return_tensors="pt")
worker = threading.Thread(target=model.generate, kwargs=dict(**inputs, streamer=streamer, max_new_tokens=30,
                                                               do_sample=True, pad_token_id=tok.eos_token_id))
worker.start()
shown = ""
for text in streamer:  # a typing effect: graphemes at a steady rate
    sys.stdout.write(text); sys.stdout.flush()
    shown += text
worker.join()
print()
print(repr(shown[:80]))"""),
        ("md", "When each piece reached the screen, against when the model produced its token:"),
        ("code", """\
m = streamer.pipeline.metrics
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(["first output", "lag p50", "lag p99"], [m.time_to_first_output or 0, m.lag(50) or 0, m.lag(99) or 0])
ax.set_ylabel("seconds")
fig.tight_layout()
keep(fig, "04-generate.png")"""),
    ],
    "05_continuation.ipynb": [
        ("md", "# The timeline of a continuation seam\n\n"
               "When the proxy's upstream dies mid-answer, the answer is continued on another upstream from "
               "exactly the text produced (issue #41, `docs/how-to/continuation.md`). The client's stream "
               "and its pipeline go on: what the pacer sees is one stream of arrivals with a silence in it, "
               "from the cut to the continuation's first token (the new upstream's first-token time plus "
               "what the proxy adds: `python -m benchmarks continuation`). `pacer.traces.stalled` is that "
               "arrival shape, and `pacer.simulate` shows what the reader sees, on the default pacer "
               "(`max_lag` 0.5 s): the backlog the pacer holds is typed out across the silence."),
        ("code", SETUP),
        ("code", """\
import itertools

text = "Wwao ao ci lv! Dfeg ue, tri. Ls eitteiteo lt litt awb. Np ap mti mt mti hnegent lt ugg. " * 2
cut = 60  # characters the first upstream produced before it was killed
seams = {"no failure": 0.0, "seam 0.2 s": 0.2, "seam 0.5 s": 0.5, "seam 1.0 s": 1.0}

def longest_gap(timeline):
    shown = [c.emitted for c in timeline.emissions]
    return max(b - a for a, b in itertools.pairwise(shown))

fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
for name, silence in seams.items():
    trace = pacer.traces.stalled(list(text), 30, after=cut, pause=silence)
    timeline = pacer.simulate(trace, pacer.Pacer())
    assert timeline.text == text  # nothing lost or repeated at the seam
    shown_t = [c.emitted for c in timeline.emissions]
    shown_n = list(itertools.accumulate(len(c.text) for c in timeline.emissions))
    axes[0].step(shown_t, shown_n, where="post", label=f"{name}: longest gap {longest_gap(timeline):.2f} s")
    axes[1].plot(shown_t, [c.lag for c in timeline.emissions], ".", markersize=2, label=name)
    print(f"{name}: reader's longest gap {longest_gap(timeline):.3f} s, lag p99 {timeline.lag(99):.3f} s")
axes[0].axvline(cut / 30, color="grey", linestyle=":", label="upstream killed")
axes[0].set_ylabel("characters shown"); axes[0].legend(fontsize=8)
axes[1].axhline(0.5, color="grey", linestyle=":")
axes[1].set_ylabel("lag (s)"); axes[1].set_xlabel("seconds")
fig.tight_layout()
keep(fig, "05-seam.png")"""),
        ("md", "Up to about `max_lag` of silence, the reader sees a pause of the length the pacer would "
               "have taken at a sentence end; longer, and the seam shows as a stall of the silence less "
               "the backlog. The lag stays bounded through the seam: the continuation's text is paced as "
               "the first upstream's was."),
    ],
}


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(
            cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        )
        nbformat.write(nb, HERE / name)
        print("wrote", name)


if __name__ == "__main__":
    build()
