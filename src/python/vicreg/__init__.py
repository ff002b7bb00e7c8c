"""VICReg loss and VCReg layer for PyTorch, on the ``torch.ops.vicreg`` operators of libvicreg.

Importing the package loads the library once (see ``_extension``). Then::

    import vicreg
    criterion = vicreg.VICRegLoss(convention="paper")      # an nn.Module, scriptable
    loss = criterion(z_a, z_b)
    loss, inv, var, cov = criterion.terms(z_a, z_b)
    h = vicreg.VCReg(var_coeff=0.16, cov_coeff=0.01)(x)    # identity; regularizes the gradient
    vicreg.functional.vicreg_loss(z_a, z_b, convention="article")
    # on every rank of torch.distributed: the loss of the batch gathered from all ranks
    criterion = vicreg.VICRegLoss(process_group=torch.distributed.group.WORLD)

The raw operators remain available as ``torch.ops.vicreg.*``.
"""
from . import _extension  # noqa: F401  (loads libvicreg before anything uses the operators)
from . import distributed, functional
from ._config import VERSION as __version__
from .modules import VCReg, VICRegLoss

__all__ = ["VICRegLoss", "VCReg", "distributed", "functional", "__version__"]
