"""Reasoner engines beside the in-process transformers one (:class:`segzero.reasoner.Reasoner`).

- :mod:`segzero.engines.vllm`: vLLM in this process (``pip install -e '.[vllm]'``), continuous batching
  and prefix caching, tensor parallelism by option;
- :mod:`segzero.engines.openai`: any OpenAI-compatible chat-completions server that takes images
  (``vllm serve``, SGLang, ``transformers serve``), asked concurrently with retries.

Both implement :class:`segzero.reasoner.ReasonerEngine` and build their requests with the same functions as
the transformers engine; :func:`segzero.reasoner.load_reasoner` picks one by ``PipelineConfig.engine``.
"""
