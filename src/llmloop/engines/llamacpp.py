"""The llamacpp engine: GGUF models through llama.cpp, as a child ``llama-server`` or in-process.

With the ``server_binary`` option the engine starts ``llama-server`` (or anything speaking the
same flags and the OpenAI API) as a child process on 127.0.0.1, waits for ``/health`` and then
delegates every call to the openai engine; the child's log is read as it comes (its last lines
explain a child that dies) and closing the engine stops the child. Without it, the model is
loaded in-process with the llama-cpp-python bindings (``pip install llmloop[llamacpp]``) and
calls run one at a time in a worker thread. ``model`` is a GGUF file, or a folder holding one (a
registry version of format ``gguf``). It does not download GGUF files.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmloop.core.chat import (
    EmbeddingResult,
    EngineCapabilities,
    EngineSpec,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)
from llmloop.engines.base import Engine
from llmloop.engines.openai_compat import OpenAICompatEngine, message_dict
from llmloop.errors import (
    BadRequestError,
    ConfigError,
    UpstreamError,
    UpstreamTimeoutError,
    require_extra,
)


class LlamaCppEngineConfig(BaseModel):
    """Options of the llamacpp engine (``EngineSpec.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_binary: str | None = Field(
        default=None, description="Path of llama-server to run as a child; None: use bindings."
    )
    port: int = Field(default=0, ge=0, le=65535, description="Child server port (0: a free one).")
    n_ctx: int = Field(default=4096, ge=16, description="Context length in tokens.")
    n_threads: int | None = Field(default=None, ge=1, description="CPU threads (None: default).")
    n_gpu_layers: int = Field(default=0, ge=-1, description="Layers offloaded to GPU (-1: all).")
    parallel: int = Field(default=4, ge=1, description="Child server slots decoding at once.")
    embeddings: bool = Field(
        default=False,
        description="Serve embeddings (--embeddings); a child llama-server then serves no "
        "completions, so give chat and embeddings separate targets.",
    )
    pooling: Literal["mean", "cls", "last"] = Field(
        default="mean", description="Child server: how token vectors pool into an embedding."
    )
    startup_timeout_s: float = Field(default=120.0, gt=0, description="Wait for /health, seconds.")
    timeout_s: float = Field(default=300.0, gt=0, description="Per-request timeout, seconds.")
    context_shift: bool = Field(
        default=True,
        description="Child server: llama-server's default, which cuts a prompt longer than a "
        "slot's context (n_ctx / parallel) without an error; false refuses it (400) instead, "
        "and an answer that fills the context then fails.",
    )
    jinja: bool = Field(
        default=True, description="Child server: --jinja (the GGUF's chat template; tool calls)."
    )
    extra_args: list[str] = Field(default_factory=list, description="More child-server flags.")


def parse_config(options: dict[str, object]) -> LlamaCppEngineConfig:
    try:
        return LlamaCppEngineConfig.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad llamacpp engine options: {problems}") from None


def _capped(req: GenerationRequest) -> GenerationRequest:
    """``req`` as llama-server takes it: ``max_tokens`` sent even when the gateway chose it (the
    child server is ours, and its own default is to generate until the context is full), and
    every function tool with a ``description``: OpenAI's API makes it optional, but
    llama-server's tool templates read it and answer 500 without it."""
    update: dict[str, Any] = {}
    sampling = req.sampling
    if "max_tokens" not in sampling.model_fields_set:
        update["sampling"] = sampling.model_copy(update={"max_tokens": sampling.max_tokens})
    if req.tools and any(_undescribed(tool) for tool in req.tools):
        update["tools"] = [_described(tool) for tool in req.tools]
    return req.model_copy(update=update) if update else req


def _undescribed(tool: dict[str, Any]) -> bool:
    function = tool.get("function")
    return isinstance(function, dict) and "description" not in function


def _described(tool: dict[str, Any]) -> dict[str, Any]:
    if not _undescribed(tool):
        return tool
    return {**tool, "function": {**tool["function"], "description": ""}}


def gguf_path(model: str) -> str:
    """The GGUF file ``model`` names: the file itself, or the one ``.gguf`` in a folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        found = sorted(path.rglob("*.gguf"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise ConfigError(f"model folder {path} must hold one .gguf file (found: {names})")
        return str(found[0])
    if not path.is_file():
        raise ConfigError(f"GGUF file {path} not found (the llamacpp engine's 'model')")
    return str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaCppEngine(Engine):
    """llama.cpp behind the Engine contract (child server or in-process bindings)."""

    kind = "llamacpp"
    config_cls = LlamaCppEngineConfig

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self.config = parse_config(spec.options)
        if not spec.model:
            raise ConfigError("the llamacpp engine needs 'model': the path of a GGUF file")
        binary = self.config.server_binary
        if binary is None:
            require_extra("llama_cpp", "llamacpp", "the llamacpp engine (in-process GGUF)")
        elif shutil.which(binary) is None:
            raise ConfigError(f"server_binary '{binary}' is not an executable file or command")
        self.model_path = gguf_path(spec.model)
        self._process: asyncio.subprocess.Process | None = None
        self._log: deque[str] = deque(maxlen=40)  # the child's last log lines
        self._reader: asyncio.Task[None] | None = None
        self._upstream: OpenAICompatEngine | None = None
        self._llama: Any = None
        self._lock = threading.Lock()  # llama.cpp contexts are not thread-safe

    @property
    def capabilities(self) -> EngineCapabilities:
        server = bool(self.config.server_binary)
        return EngineCapabilities(
            embeddings=self.config.embeddings,
            logprobs=False,
            tools=server and self.config.jinja,  # llama-server parses calls with --jinja
            structured_output=server,  # llama-server turns response_format into a grammar
            max_batch_size=self.config.parallel if self.config.server_binary else 1,
            max_context=self.config.n_ctx,
        )

    async def start(self) -> None:
        if self._upstream is not None or self._llama is not None:
            return
        if self.config.server_binary:
            await self._start_server()
        else:
            self._llama = await asyncio.to_thread(self._load_bindings)

    def _server_args(self, port: int) -> list[str]:
        cfg = self.config
        args = ["-m", self.model_path, "--host", "127.0.0.1", "--port", str(port)]
        args += ["-c", str(cfg.n_ctx), "--parallel", str(cfg.parallel)]
        args += ["-ngl", str(cfg.n_gpu_layers)]
        if cfg.n_threads:
            args += ["-t", str(cfg.n_threads)]
        if cfg.embeddings:  # llama-server then serves embeddings only (501 on completions)
            args += ["--embeddings", "--pooling", cfg.pooling]
        if cfg.jinja:
            args.append("--jinja")
        if not cfg.context_shift:
            args.append("--no-context-shift")
        return args + list(cfg.extra_args)

    async def _start_server(self) -> None:
        cfg = self.config
        assert cfg.server_binary is not None
        port = cfg.port or _free_port()
        try:
            self._process = await asyncio.create_subprocess_exec(
                cfg.server_binary,
                *self._server_args(port),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigError(f"cannot start '{cfg.server_binary}': {exc}") from None
        # Read the child's log as it comes: a full pipe would block llama-server mid-request.
        self._reader = asyncio.get_running_loop().create_task(self._read_log(self._process))
        try:
            await asyncio.wait_for(self._wait_healthy(port), cfg.startup_timeout_s)
        except TimeoutError:
            await self.aclose()
            raise UpstreamTimeoutError(f"llama-server did not become healthy on port {port}")
        spec = EngineSpec(
            kind="openai",
            model=self.model_path,
            options={
                "base_url": f"http://127.0.0.1:{port}/v1",
                "timeout_s": cfg.timeout_s,
                "embeddings": cfg.embeddings,
                "logprobs": False,
            },
        )
        self._upstream = OpenAICompatEngine(spec)
        await self._upstream.start()

    async def _wait_healthy(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}/health"
        async with aiohttp.ClientSession() as session:
            while True:
                process = self._process
                if process is not None and process.returncode is not None:
                    if self._reader is not None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(self._reader), 2)
                    tail = "\n".join(self._log)[-500:]
                    raise UpstreamError(f"llama-server exited with {process.returncode}: {tail}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            self._log.append(line.decode(errors="replace").rstrip())

    def _load_bindings(self) -> Any:
        import llama_cpp

        cfg = self.config
        # Unpooled, an embedding is a vector per token; pooled, one per text as OpenAI's.
        pooling = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
        if cfg.embeddings:
            pooling = getattr(llama_cpp, f"LLAMA_POOLING_TYPE_{cfg.pooling.upper()}")
        try:
            return llama_cpp.Llama(
                model_path=self.model_path,
                n_ctx=cfg.n_ctx,
                n_threads=cfg.n_threads,
                n_gpu_layers=cfg.n_gpu_layers,
                embedding=cfg.embeddings,
                pooling_type=pooling,
                verbose=False,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load GGUF '{self.spec.model}': {exc}") from None

    async def aclose(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.aclose()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        self._llama = None

    # -- calls -----------------------------------------------------------------------------
    async def _ready(self) -> OpenAICompatEngine | None:
        await self.start()
        return self._upstream

    def _kwargs(self, req: GenerationRequest) -> dict[str, Any]:
        s = req.sampling
        return {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k or 0,
            "stop": list(s.stop) or None,
            "seed": s.seed,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "repeat_penalty": s.repetition_penalty or 1.0,
        }

    def _run(self, req: GenerationRequest, stream: bool) -> Any:
        if self.config.embeddings:  # llama-cpp-python crashes the process generating with it
            raise BadRequestError(
                "this llamacpp target serves embeddings only (its options say embeddings: "
                "true): give chat and completions another target",
                param="model",
            )
        with self._lock:
            try:
                if req.messages is not None:
                    messages = [message_dict(m) for m in req.messages]
                    return self._llama.create_chat_completion(
                        messages=messages, stream=stream, **self._kwargs(req)
                    )
                return self._llama.create_completion(
                    prompt=req.prompt, stream=stream, echo=req.echo, **self._kwargs(req)
                )
            except ValueError as exc:  # "Requested tokens (4021) exceed context window of 256"
                raise BadRequestError(str(exc), param="messages" if req.messages else "prompt")

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        upstream = await self._ready()
        if upstream is not None:
            return await upstream.chat(_capped(req))
        out = await asyncio.to_thread(self._run, req, False)
        choice = out["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        usage = out.get("usage") or {}
        return GenerationResult(
            text=text or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        upstream = await self._ready()
        if upstream is not None:
            async for chunk in upstream.stream(_capped(req)):
                yield chunk
            return
        # The bindings have no streaming usage: run the whole answer, then yield it in one piece.
        result = await self.chat(req)
        if result.text:
            yield GenerationChunk(text=result.text)
        yield GenerationChunk(finish_reason=result.finish_reason, usage=result.usage)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        upstream = await self._ready()
        if upstream is not None:
            return await upstream.embed(texts)
        if not self.config.embeddings:
            raise BadRequestError(
                "this llamacpp target serves no embeddings (its options say embeddings: false)",
                param="model",
            )

        def run() -> Any:
            with self._lock:
                return self._llama.create_embedding(texts)

        out = await asyncio.to_thread(run)
        vectors = [list(map(float, d["embedding"])) for d in out["data"]]
        return EmbeddingResult(
            vectors=vectors, usage=Usage(prompt_tokens=out.get("usage", {}).get("prompt_tokens", 0))
        )
