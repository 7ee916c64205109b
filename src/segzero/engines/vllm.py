"""The vllm engine: the reasoner on vLLM in this process (``pip install -e '.[vllm]'``; Linux, CUDA GPUs).

Requests are vLLM multimodal prompts, ``{"prompt": text, "multi_modal_data": {"image": view}}``: the text is
the model's chat template over :func:`segzero.reasoner.build_messages` (:func:`segzero.reasoner.chat_text`)
and the view is :func:`segzero.reasoner.reasoner_image`, exactly what the transformers engine feeds
``generate``. Decoding is greedy with the model's own repetition penalty (its ``generation_config.json``,
which transformers' ``generate`` applies too).

One thread owns vLLM's engine (``LLM.llm_engine``: ``add_request`` and ``step``): requests handed over
by :meth:`VLLMEngine.submit` join the running ones at its next step, so vLLM schedules everything it holds
(continuous batching; prefix caching shares the image tokens of requests on one image) and each request
completes without waiting for the others. ``--tensor-parallel-size`` splits the model over GPUs and
``--vllm-args`` passes any other ``vllm.LLM`` argument; vLLM takes at most
:data:`~segzero.defaults.VLLM_GPU_MEMORY_UTILIZATION` of the GPU unless told otherwise, leaving the rest to the
segmenter.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from PIL import Image

from segzero.defaults import DEFAULT_PROMPT, MAX_NEW_TOKENS, VLLM_GPU_MEMORY_UTILIZATION
from segzero.errors import EngineError, ModelLoadError, ReasonerRequestError
from segzero.hub import load_pretrained
from segzero.prompts import PromptVariant
from segzero.reasoner import ReasonerEngine, chat_text, min_new_tokens_of, reasoner_coordinates, reasoner_image
from segzero.runaway import runaway_reason

if TYPE_CHECKING:
    from segzero.config import PipelineConfig

logger = logging.getLogger("segzero.engines.vllm")

#: What the missing package is called in the one sentence that says so.
INSTALL_HINT = "install it with pip install -e '.[vllm]' (Linux with a CUDA GPU), or use --engine transformers"


def import_vllm() -> Any:
    """The ``vllm`` module.

    Raises:
        EngineError: vLLM is not installed (or does not import), naming the install command.
    """
    try:
        import vllm
    except ImportError as exc:
        broken = "" if exc.name == "vllm" else f" (importing it failed: {exc})"
        raise EngineError(f"The vllm engine needs vLLM, which is not installed here{broken}; {INSTALL_HINT}.") from None
    return vllm


class VLLMEngine(ReasonerEngine):
    """A reasoner on vLLM in this process (see the module docstring).

    Use :meth:`from_pretrained` or :meth:`from_config`; the constructor takes a built ``vllm.LLM`` and the
    model's transformers processor (for its chat template).
    """

    engine = "vllm"
    streams = True

    def __init__(
        self, llm: Any, processor: Any, *, frame: int, coordinates: str = "pixels", name: str = ""
    ) -> None:
        super().__init__(frame=frame, coordinates=coordinates, name=name)
        self.llm = llm
        self.processor = processor
        defaults = llm.get_default_sampling_params() if llm is not None else None
        self.repetition_penalty = float(getattr(defaults, "repetition_penalty", 1.0) or 1.0)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._failure: BaseException | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        frame: int,
        coordinates: str | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        options: dict[str, Any] | None = None,
    ) -> VLLMEngine:
        """Load the reasoner into vLLM, by hub id or folder.

        Args:
            frame / coordinates: the view side, and the convention (None: the model's own).
            dtype: ``bfloat16``, ``float16``, ``float32``; None lets vLLM choose from the weights.
            tensor_parallel_size: GPUs to split the model over.
            options: more ``vllm.LLM`` arguments; they win over the ones set here.

        Raises:
            EngineError: vLLM is not installed.
            ModelLoadError: vLLM or transformers cannot load the model.
        """
        vllm = import_vllm()
        from transformers import AutoProcessor

        coordinates = reasoner_coordinates(name_or_path, coordinates)
        processor = load_pretrained(AutoProcessor.from_pretrained, name_or_path, "reasoner")
        args = {
            "model": name_or_path,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype or "auto",
            "limit_mm_per_prompt": {"image": 1},
            "gpu_memory_utilization": VLLM_GPU_MEMORY_UTILIZATION,
            "seed": 0,
            **(options or {}),
        }
        try:
            llm = vllm.LLM(**args)
        except Exception as exc:  # vLLM raises many kinds; the user needs one sentence and the cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelLoadError(
                f"vLLM could not load the reasoner {name_or_path} ({type(exc).__name__}: {first}); "
                "check the model and --vllm-args."
            ) from exc
        return cls(llm, processor, frame=frame, coordinates=coordinates, name=name_or_path)

    @classmethod
    def from_config(cls, config: PipelineConfig) -> VLLMEngine:
        """The engine a resolved :class:`~segzero.config.PipelineConfig` describes (``--engine vllm``)."""
        from segzero.config import vllm_options

        vllm_args = vllm_options(config.vllm_args)  # a malformed value is refused before vLLM is looked for
        import_vllm()
        return cls.from_pretrained(
            config.reasoner, frame=config.frame, coordinates=config.coordinates, dtype=config.dtype,
            tensor_parallel_size=config.tensor_parallel_size, options=vllm_args,
        )  # fmt: skip

    # -- requests ----------------------------------------------------------------------------

    def inputs(
        self, image: Image.Image, request: str, prompt: str | PromptVariant = DEFAULT_PROMPT
    ) -> dict[str, Any]:
        """The vLLM prompt of one request: the chat text and the view."""
        return {
            "prompt": chat_text(self.processor, request, prompt, self.coordinates),
            "multi_modal_data": {"image": reasoner_image(image, self.frame)},
        }

    def sampling(self, max_new_tokens: int, min_new_tokens: int | None = None) -> Any:
        """Greedy ``vllm.SamplingParams`` with the model's repetition penalty."""
        from vllm import SamplingParams

        return SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens,
            min_tokens=min_new_tokens or 0,
            repetition_penalty=self.repetition_penalty,
            skip_special_tokens=True,
        )

    def submit(
        self,
        image: Image.Image,
        request: str,
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_text: Callable[[str], None] | None = None,
        stop_runaway: bool = False,
        **generate_kwargs: Any,
    ) -> Future[str]:
        """Hand one request to vLLM (see :meth:`ReasonerEngine.submit`); ``min_new_tokens`` is the one
        generation setting taken beside ``max_new_tokens``. With ``stop_runaway`` the request is aborted in
        vLLM as soon as its text runs away, and its completion is the text up to there.

        Raises:
            InputError: another generation setting.
        """
        min_new_tokens = min_new_tokens_of(self.engine, generate_kwargs)
        future: Future[str] = Future()
        sampling = self.sampling(max_new_tokens, min_new_tokens)
        item = (self.inputs(image, request, prompt), sampling, future, on_text, stop_runaway)
        with self._lock:
            if self._failure is not None:
                future.set_exception(self._failure)
                return future
            self._inbox.put(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="segzero-vllm", daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        """The engine loop: take new requests, step, hand out new text and finished completions."""
        engine = self.llm.llm_engine
        live: dict[str, list[Any]] = {}  # request id -> [future, on_text, characters sent, stop_runaway]
        while True:
            items = [self._inbox.get()] if not live else []  # idle: wait for work
            while True:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if item is None:  # close()
                    self._stop(live, EngineError("the vllm engine was closed"))
                    return
                inputs, params, future, on_text, stop_runaway = item
                request_id = str(next(self._ids))
                try:
                    engine.add_request(request_id, inputs, params)
                except Exception as exc:  # noqa: BLE001 - this request is refused, the others go on
                    future.set_exception(ReasonerRequestError(f"vLLM refused the request ({type(exc).__name__}: {exc})"))
                    continue
                live[request_id] = [future, on_text, 0, stop_runaway]
            if not live:
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # noqa: BLE001 - vLLM itself failed: every request fails, none hangs
                logger.exception("vLLM failed")
                self._stop(live, EngineError(f"vLLM failed ({type(exc).__name__}: {exc})"))
                return
            for output in outputs:
                entry = live.get(output.request_id)
                if entry is None:
                    continue
                future, on_text, sent, stop_runaway = entry
                text = output.outputs[0].text
                if on_text is not None and len(text) > sent:
                    try:
                        on_text(text[sent:])
                    except Exception:  # noqa: BLE001 - a listener's bug must not stop the engine
                        logger.exception("on_text failed")
                    entry[2] = len(text)
                if output.finished:
                    del live[output.request_id]
                    future.set_result(text)
                elif stop_runaway and runaway_reason(text) is not None:
                    engine.abort_request([output.request_id])
                    del live[output.request_id]
                    future.set_result(text)

    def _stop(self, live: dict[str, list[Any]], error: BaseException) -> None:
        """Fail every request held or still waiting with ``error``, and every later one."""
        with self._lock:
            self._failure = error
            futures = [entry[0] for entry in live.values()]
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    futures.append(item[2])
        for future in futures:
            if not future.done():
                future.set_exception(error)
        live.clear()

    def close(self) -> None:
        with self._lock:
            if self._thread is not None and self._failure is None:
                self._inbox.put(None)
