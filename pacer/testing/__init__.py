"""What pacer's own tests, benchmarks and notebooks share, importable from one place.

* ``pacer.testing.cases``: the labelled sentence-boundary set (English, Chinese,
  Japanese, Markdown), written for this project.
* ``pacer.testing.strategies``: hypothesis strategies for hard text and arbitrary
  splits of it (needs ``hypothesis``).
* ``pacer.testing.references``: faithful re-implementations of the pacers pacer is
  measured against (Vercel AI SDK's ``smoothStream``, HF chat-ui's smoother), as stages.
* ``pacer.testing.rhythm``: the reader pipelines of pacer's entry points on
  held-out traces, and how their rhythm is judged (pause ratio, lag, smoothness).
* ``pacer.testing.live``: live drivers on a clock that moves as a real one does,
  compared with ``simulate`` on the same arrivals (live equals simulated).
* ``pacer.testing.model`` and ``pacer.testing.model_server``: a tiny, seeded, greedy
  ``transformers`` model with a character-level tokenizer (a partial answer continues
  with exactly its rest), behind an OpenAI-compatible server (``continue_final_message``)
  that tests start as processes of their own (needs torch and transformers).
* ``pacer.testing.backends``: the real tokenizers the tests run on, built from files
  that registry packages ship (needs the ``hf``, ``tiktoken`` and ``demo`` extras).

None of it is imported by ``import pacer``.
"""
