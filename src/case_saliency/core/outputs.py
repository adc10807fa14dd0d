"""Models as users have them: the logits inside whatever a classifier's forward returns.

A forward may return the logits tensor (B, K), a tuple or list (the first element), a mapping (its
``"logits"`` key, else its first value), or an object with a ``logits`` attribute (every Hugging Face
``transformers`` classifier's output); or a user's ``output=`` callable picks them.
``logits_model(network, output)`` gives a module whose forward returns the tensor and whose module
tree, parameters and training flags are the network's own, so layer names (``"layer4"``,
``"vit.encoder.layer.1.layernorm_before"``), the default layer and the classifier head resolve as on
the network itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

OutputPicker = Callable[[Any], Tensor]


def logits_from(output: Any, picker: OutputPicker | None = None) -> Tensor:
    """The logits tensor inside a model's output.

    Args:
        output: what the forward returned: a tensor, a tuple/list (first element), a mapping
            (``"logits"``, else the first value), or an object with ``.logits``.
        picker: a function of the output returning the logits; overrides the rules above.
    Returns:
        the tensor (not checked for shape here).
    Raises:
        TypeError naming what was returned and the fix (``output=``).
    """
    if picker is not None:
        picked = picker(output)
        if not isinstance(picked, Tensor):
            raise TypeError(f"the output= function returned {type(picked).__name__}, not a tensor of logits (B, K)")
        return picked
    if isinstance(output, Tensor):
        return output
    found: Any = None
    if isinstance(output, Mapping):
        found = output["logits"] if "logits" in output else next(iter(output.values()), None)
    elif isinstance(output, (tuple, list)) and output:
        found = output[0]
    elif getattr(output, "logits", None) is not None:
        found = output.logits
    if isinstance(found, Tensor):
        return found
    raise TypeError(f"the model returned {type(output).__name__}, and no logits tensor (B, K) was found in it "
                    "(looked for: a tensor, the first element of a tuple/list, a mapping's 'logits' key or first "
                    "value, an object's .logits); pass output=lambda out: <the logits> to the method or load_model")


def is_transformers_model(model: nn.Module) -> bool:
    """True for a Hugging Face ``transformers`` model (its output is an object with ``.logits``),
    found from the class hierarchy without importing transformers."""
    return any(cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers")
               for cls in type(model).__mro__)


_PLAIN_LIBRARIES = ("torchvision.", "timm.", "case_saliency.")


def returns_tensor(model: nn.Module) -> bool:
    """True where ``model``'s forward is known to return the logits tensor itself: torchvision,
    timm and this library's networks, and ``LogitsModel``. Any other network is wrapped (the
    wrapper passes a tensor through unchanged), since its output is only known once it runs."""
    if isinstance(model, LogitsModel) or type(model).__module__.startswith(_PLAIN_LIBRARIES):
        return True
    # torch's own layers (nn.Linear as a whole model) return tensors; its containers return what their last module does
    return type(model).__module__.startswith("torch.nn.modules.") and not isinstance(model, nn.Sequential)


_WRAPPERS: weakref.WeakValueDictionary[tuple[int, int], LogitsModel] = weakref.WeakValueDictionary()


class LogitsModel(nn.Module):
    """``network`` with a forward that returns its logits tensor (see ``logits_from``).

    The wrapper holds no module of its own: its children, parameters, buffers and training flag
    are the network's, so ``named_modules()``, ``state_dict()`` and layer names are unchanged; any
    other attribute (``config``, ``pretrained_cfg``, ``get_classifier``) is read from the network.
    """

    def __init__(self, network: nn.Module, output: OutputPicker | None = None):
        super().__init__()
        object.__setattr__(self, "network", network)  # not a child: the tree stays the network's own
        self._modules = network._modules
        self._parameters = network._parameters
        self._buffers = network._buffers
        self.output = output

    @property
    def training(self) -> bool:  # the network's flag, so eval_mode restores it as found
        network = self.__dict__.get("network")
        return bool(network.training) if network is not None else True

    @training.setter
    def training(self, mode: bool) -> None:
        network = self.__dict__.get("network")
        if network is not None:
            network.training = mode

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return logits_from(self.network(*args, **kwargs), self.output)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            network = self.__dict__.get("network")
            if network is None:
                raise
            return getattr(network, name)

    def __repr__(self) -> str:
        return f"LogitsModel({type(self.network).__name__})"


def logits_model(network: nn.Module, output: OutputPicker | None = None) -> nn.Module:
    """``network`` itself where its forward returns the logits tensor and no ``output`` is given,
    else its ``LogitsModel`` (the same wrapper for the same network and picker, so that methods
    built separately still share one pass in ``explain_many``)."""
    if isinstance(network, LogitsModel):
        if output is None or output is network.output:
            return network
        network = network.network
    if output is None and returns_tensor(network):
        return network
    key = (id(network), id(output))
    wrapper = _WRAPPERS.get(key)
    if wrapper is None or wrapper.network is not network or wrapper.output is not output:
        wrapper = LogitsModel(network, output)
        _WRAPPERS[key] = wrapper
    return wrapper


def underlying_network(model: nn.Module) -> nn.Module:
    """The user's network behind a ``LogitsModel`` (the model itself otherwise)."""
    return model.network if isinstance(model, LogitsModel) else model


__all__ = ["LogitsModel", "logits_from", "logits_model", "returns_tensor", "is_transformers_model",
           "underlying_network", "OutputPicker"]
