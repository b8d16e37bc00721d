"""latent_city: a pytest suite for the "latent city" hypothesis (README.md)."""

import logging

# bitsandbytes 0.50 on a CPU with avx512_bf16 tries, at import, to fetch an optional 4-bit kernel
# from the Hugging Face hub through the `kernels` package, and warns on every run that it could
# not. latent_city never downloads code; the built-in kernel it falls back to is the one used
# (and the one model._fix_4bit_on_cpu keeps training correct with).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# bitsandbytes' 8-bit matmul logs "MatMul8bitLt: inputs will be cast from ... to float16" through its
# logger on every call (hundreds of lines a forward pass; not a Python warning, so warning filters do
# not catch it). The cast is how its 8-bit kernel works, said once here instead of on every matmul.
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
