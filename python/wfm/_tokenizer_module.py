"""wfm.tokenizer.TokenizerModule: a native Tokenizer as a torch.nn.Module whose parameters and buffers ARE the
native network's tensors (the same tensor objects, no copy), so PyTorch's module API acts on the native network."""
import torch


class TokenizerModule(torch.nn.Module):
    """A ``wfm.tokenizer.Tokenizer`` (native backend) as a ``torch.nn.Module``.

    The module tree mirrors the reference names (``encoder.conv_in.0.conv3d.weight``, ...) and every parameter /
    buffer registered in it is the native network's own tensor: ``data_ptr()`` is equal, in-place changes and
    optimizer steps change the tokenizer, and gradients of ``forward`` accumulate in ``.grad`` of these tensors.
    What works, precisely:

    - ``state_dict()`` (reference names; tensors share storage), ``load_state_dict()`` (copies into the native
      tensors, strict by default), ``parameters()`` / ``named_parameters()`` / ``buffers()`` for torch.optim,
      ``zero_grad()``, ``requires_grad_()``. The parameters are ``nn.Parameter`` instances: the native tensor
      objects, whose Python class is switched to ``nn.Parameter`` in place (no new tensor).
    - ``forward(x)`` -> ``(reconstruction, latent, indices or None)``: the native network with autograd
      (x float [B, 3, 1 + k*Tc, H, W], H and W multiples of the spatial compression; FSQ straight-through).
    - ``train(mode)`` / ``eval()``: also switch the native network's mode (VAE sampling).
    - ``.to(dtype)``, ``.to(device)``, ``.float()``, ``.bfloat16()``, ``.cuda()``, ...: move the native tensors
      IN PLACE (``tensor.data = ...``, like the native ``to()``): the network itself moves, not a copy.
      Afterwards ``encode``/``decode``/``reconstruct`` of this module (and ``.tokenizer``) run on the new
      device/dtype; a ``Tokenizer`` object created earlier keeps converting its inputs to the old ones.
    - ``encode`` / ``decode`` / ``reconstruct`` take the keyword arguments of ``Tokenizer`` (modes, tiling,
      progress) and run without autograd.

    Not supported: ``register_parameter`` of new tensors into the native tree (they would not reach the C++
    network), ``torch.nn.utils.parametrize``, ``copy.deepcopy`` / pickling (the native tensors cannot be
    pickled here; save with ``wfm.core.write_safetensors(module.state_dict())`` or ``tokenizer.save()``),
    and TorchScript-backend tokenizers (they have no native network: ValueError).
    """

    def __init__(self, tokenizer):
        super().__init__()
        state = tokenizer.state_dict()  # raises ValueError for a TorchScript-backend tokenizer
        params = {id(p) for p in tokenizer.parameters()}
        self._tok = tokenizer
        for name, tensor in state.items():
            *path, leaf = name.split(".")
            owner = self
            for part in path:
                child = owner._modules.get(part)
                if child is None:
                    child = torch.nn.Module()
                    owner._modules[part] = child
                owner = child
            # The native tensor object itself is registered. A parameter's Python class is switched to
            # nn.Parameter in place (as torch does for UninitializedParameter): still the same tensor, now an
            # nn.Parameter for code that checks; nn.Parameter(t) would make a NEW tensor that autograd and the
            # C++ network would not see.
            if id(tensor) in params:
                if not isinstance(tensor, torch.nn.Parameter):
                    tensor.__class__ = torch.nn.Parameter
                owner.register_parameter(leaf, tensor)
            else:
                owner.register_buffer(leaf, tensor)
        self.training = tokenizer.training

    @classmethod
    def from_files(cls, config, weights, **kwargs):
        """``TokenizerModule(Tokenizer.from_files(config, weights, **kwargs))``."""
        from . import tokenizer as _tk

        return cls(_tk.Tokenizer.from_files(config, weights, **kwargs))

    @classmethod
    def random(cls, config, **kwargs):
        """``TokenizerModule(Tokenizer.random(config, **kwargs))``."""
        from . import tokenizer as _tk

        return cls(_tk.Tokenizer.random(config, **kwargs))

    @property
    def tokenizer(self):
        """The native Tokenizer serving this network on its current device and dtype."""
        return self._tok

    def forward(self, x):
        return self._tok.forward(x)

    def encode(self, x, **kwargs):
        return self._tok.encode(x, **kwargs)

    def decode(self, latent, geometry=None, **kwargs):
        return self._tok.decode(latent, geometry, **kwargs)

    def reconstruct(self, x, **kwargs):
        return self._tok.reconstruct(x, **kwargs)

    def train(self, mode=True):
        super().train(mode)
        self._tok.train(mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        # The tensors moved in place; serve the network again so encode/decode use its new device and dtype.
        self._tok = self._tok.share()
        return self

    def extra_repr(self):
        return repr(self._tok)
