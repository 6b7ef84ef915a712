"""wfm: video world foundation models — Python bindings of the C++ library.

One submodule per C++ library: ``wfm.core`` (checkpoint files and loading, video IO, progress, runtime),
``wfm.tokenizer``, ``wfm.text``, ``wfm.curation``, ``wfm.ar``, ``wfm.diffusion``. Tensors are
``torch.Tensor`` and cross the boundary without copies. Errors raise ValueError (bad arguments or input),
FileNotFoundError / PermissionError / OSError (files), NotImplementedError or RuntimeError, each with the C++
status message and a ``status_code`` attribute. See docs/python.md.
"""
import sys as _sys

import torch as _torch  # noqa: F401  -- loads torch's Python types before the extension uses them

from . import _wfm

__version__ = _wfm.__version__
__all__ = list(_wfm.SUBMODULES)

for _name in _wfm.SUBMODULES:
    _module = getattr(_wfm, _name)
    _module.__name__ = f"{__name__}.{_name}"
    _sys.modules[_module.__name__] = _module  # `import wfm.core` / `from wfm.core import ...` work
    globals()[_name] = _module
del _name, _module

if "curation" in __all__:
    from ._curation_data import ShardDataset as _ShardDataset

    _ShardDataset.__module__ = "wfm.curation"
    curation.ShardDataset = _ShardDataset  # noqa: F821  -- a torch IterableDataset over the native ShardReader

if "tokenizer" in __all__:
    from ._tokenizer_module import TokenizerModule as _TokenizerModule

    _TokenizerModule.__module__ = "wfm.tokenizer"
    tokenizer.TokenizerModule = _TokenizerModule  # noqa: F821  -- the native network as a torch.nn.Module
